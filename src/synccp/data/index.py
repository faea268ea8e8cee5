"""A file index of an image folder: the paths and labels of a split, listed once and cached.

The index holds no pixels: one byte blob of UTF-8 relative paths, their offsets and the labels,
as numpy arrays (no Python object per file, so DataLoader workers forked from the main process
share its pages instead of copying them as reference counts change). ImageNet's 1.28 M training
paths take about 60 MB. The cache is `cache_dir("image_index")/<key>.npz`, where the key hashes
the folder, the split and the name and modification time of every class directory — a file added
to or removed from a class directory changes that directory's mtime and rebuilds the index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synccp.data.datasets import DatasetError, cache_dir

logger = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_VERSION = 1


@dataclass(frozen=True)
class FileIndex:
    """Image paths (relative to `root`) and int64 labels of one split, in class-then-name order."""

    root: Path
    blob: np.ndarray      # (total bytes,) uint8: the relative paths, UTF-8, back to back
    offsets: np.ndarray   # (N + 1,) int64: path i is blob[offsets[i]:offsets[i + 1]]
    labels: np.ndarray    # (N,) int64
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> Path:
        return self.root / bytes(self.blob[self.offsets[i]:self.offsets[i + 1]]).decode()

    def take(self, rows: np.ndarray) -> FileIndex:
        """The index restricted to `rows` (in that order)."""
        parts = [self.blob[self.offsets[i]:self.offsets[i + 1]] for i in rows]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        blob = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        return FileIndex(self.root, blob, offsets, self.labels[rows], self.classes)


def build_index(root: Path, split_dir: Path, classes: list[str]) -> FileIndex:
    """The index of `split_dir/<class>/*` for `classes` (label = position in `classes`), cached.

    A class directory missing from `split_dir` holds no images of that split; a split with no
    images at all is an error naming the directory."""
    class_dirs = [split_dir / name for name in classes]
    stamps = [(d.name, d.stat().st_mtime_ns) if d.is_dir() else (d.name, None) for d in class_dirs]
    key = json.dumps([_VERSION, str(root.resolve()), str(split_dir.resolve()), stamps])
    cache = cache_dir("image_index") / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
    index = _load(cache, root, classes)
    if index is None:
        index = _list(root, class_dirs, classes)
        _save_atomic(cache, index)
        logger.info("indexed %d images of %s (cache %s)", len(index), split_dir, cache)
    if not len(index):
        raise DatasetError(f"{split_dir}: no images with extensions {', '.join(EXTENSIONS)} "
                           f"in its class directories")
    return index


def _list(root: Path, class_dirs: list[Path], classes: list[str]) -> FileIndex:
    names: list[bytes] = []
    labels: list[int] = []
    for label, directory in enumerate(class_dirs):
        if not directory.is_dir():
            continue
        with os.scandir(directory) as entries:
            files = sorted(e.name for e in entries if not e.name.startswith(".")
                           and os.path.splitext(e.name)[1].lower() in EXTENSIONS and e.is_file())
        prefix = str(directory.relative_to(root))
        names += [f"{prefix}/{name}".encode() for name in files]
        labels += [label] * len(files)
    lengths = np.array([len(n) for n in names], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    blob = np.frombuffer(b"".join(names), dtype=np.uint8).copy()
    return FileIndex(root, blob, offsets, np.array(labels, dtype=np.int64), tuple(classes))


def _load(path: Path, root: Path, classes: list[str]) -> FileIndex | None:
    """The cached index, or None when absent, unreadable or for other classes."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["classes"])) != list(classes):
                return None
            return FileIndex(root, f["blob"], f["offsets"], f["labels"], tuple(classes))
    except Exception as err:  # a damaged cache is rebuilt, never fatal
        logger.warning("ignoring unreadable index %s (%s)", path, err)
        return None


def _save_atomic(path: Path, index: FileIndex) -> None:
    """The index as .npz through `rundir.atomic_write` (temporary file, fsync, rename)."""
    from synccp.rundir.atomic import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(f, blob=index.blob, offsets=index.offsets, labels=index.labels,
                     classes=np.array(json.dumps(list(index.classes))))

    atomic_write(path, write)
