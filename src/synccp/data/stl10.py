"""STL-10 from the official binary release.

https://cs.stanford.edu/~acoates/stl10/: `stl10_binary.tar.gz` holds `stl10_binary/` with
`train_X.bin`, `train_y.bin` (5000), `test_X.bin`, `test_y.bin` (8000) and `unlabeled_X.bin`
(100000, 2.7 GB). Each image is 3×96×96 bytes, channel by channel, and each channel plane is
stored **column-major** (the MATLAB layout): byte `c*9216 + x*96 + y` is pixel (row y, column x).
Labels are one byte each, 1..10, mapped here to 0..9; unlabeled images get label -1. The
unlabeled file is read only for the "unlabeled" and "train+unlabeled" splits. Members are read from
the extracted folder, or streamed from the .tar.gz (slow: extract it once for repeated use).
"""

from __future__ import annotations

import logging
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from synccp.data.datasets import (
    DatasetError,
    ImageDataset,
    candidate_dirs,
    find_first,
    label_tensor,
    searched,
)

logger = logging.getLogger(__name__)

NAME = "stl10"
NUM_CLASSES = 10
# Commonly quoted STL-10 channel statistics (not recomputed here: no copy of the data offline).
MEAN = (0.4467, 0.4398, 0.4066)
STD = (0.2603, 0.2566, 0.2713)
FOLDER = "stl10_binary"
ARCHIVE = "stl10_binary.tar.gz"
URL = "https://cs.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
# MD5 of the archive as used by torchvision; the STL-10 page publishes no checksum and no SHA-256
# could be confirmed, so the archive is not downloaded automatically (2.6 GB).
MD5 = "91f7769df0f17e558f3565bffb0c7dfb"
IMAGE_SHAPE = (3, 96, 96)
IMAGE_BYTES = 3 * 96 * 96
_CHUNK_IMAGES = 1024
_PARTS = {"train": ("train",), "test": ("test",), "unlabeled": ("unlabeled",),
          "train+unlabeled": ("train", "unlabeled")}

Reader = Callable[[BinaryIO, int, str], torch.Tensor]


def load_stl10(split: str, *, root: str | None = None) -> ImageDataset:
    """STL-10 `split` as uint8 `(N, 3, 96, 96)` images; labels 0..9, or -1 when unlabeled.

    split: "train" | "test" | "unlabeled" | "train+unlabeled" (labeled images first).
    """
    dirs = candidate_dirs(NAME, root)
    source = find_first(dirs, _locate)
    if source is None:
        raise DatasetError(
            f"STL-10: neither {FOLDER}/ nor {ARCHIVE} found (looked in {searched(dirs)}); "
            f"download {URL} (md5 {MD5}), extract it (tar xzf {ARCHIVE}) and set data.root "
            "(or $SYNCCP_DATA) to the directory that holds stl10_binary/")
    readers: dict[str, Reader] = {}
    for part in _PARTS[split]:
        readers[f"{part}_X.bin"] = read_images
        if part != "unlabeled":
            readers[f"{part}_y.bin"] = read_labels
    tensors = _read_members(source, readers)
    images, labels = [], []
    for part in _PARTS[split]:
        part_images = tensors[f"{part}_X.bin"]                       # (n, 3, 96, 96)
        part_labels = (tensors[f"{part}_y.bin"] if part != "unlabeled"
                       else torch.full((part_images.shape[0],), -1, dtype=torch.int64))
        if part_labels.shape[0] != part_images.shape[0]:
            raise DatasetError(f"{source}: {part}_X.bin holds {part_images.shape[0]} images but "
                               f"{part}_y.bin {part_labels.shape[0]} labels")
        images.append(part_images)
        labels.append(part_labels)
    logger.info("loaded stl10 %s: %d images from %s", split, sum(len(x) for x in labels), source)
    return ImageDataset(images=torch.cat(images) if len(images) > 1 else images[0],
                        labels=torch.cat(labels), num_classes=NUM_CLASSES, mean=MEAN, std=STD,
                        name=NAME)


def read_images(f: BinaryIO, size: int, source: str) -> torch.Tensor:
    """Decode an `*_X.bin` stream of `size` bytes into row-major uint8 `(N, 3, 96, 96)`."""
    if size % IMAGE_BYTES:
        raise DatasetError(f"{source}: {size} bytes is not a multiple of {IMAGE_BYTES} "
                           "(3×96×96); the file is truncated or corrupt — re-download it")
    count = size // IMAGE_BYTES
    out = torch.empty((count, *IMAGE_SHAPE), dtype=torch.uint8)     # (N, C, H, W)
    for start in range(0, count, _CHUNK_IMAGES):
        n = min(_CHUNK_IMAGES, count - start)
        buffer = _read_exact(f, n * IMAGE_BYTES, source)
        stored = np.frombuffer(buffer, dtype=np.uint8).reshape(n, 3, 96, 96)   # (n, C, W, H)
        out[start:start + n] = torch.from_numpy(stored).transpose(2, 3)        # (n, C, H, W)
    return out


def read_labels(f: BinaryIO, size: int, source: str) -> torch.Tensor:
    """Decode a `*_y.bin` stream (one byte per image, 1..10) into int64 labels 0..9."""
    raw = _read_exact(f, size, source)
    return label_tensor(np.frombuffer(raw, dtype=np.uint8), num_classes=NUM_CLASSES,
                        source=source, offset=1)


def _read_exact(f: BinaryIO, nbytes: int, source: str) -> bytearray:
    """Exactly `nbytes` from `f` into a writable buffer, else a DatasetError naming `source`."""
    buffer = bytearray(nbytes)
    view, filled = memoryview(buffer), 0
    while filled < nbytes:
        got = f.readinto(view[filled:])
        if not got:
            raise DatasetError(f"{source}: ended after {filled} of {nbytes} expected bytes; "
                               "the file is truncated — re-download it")
        filled += got
    return buffer


def _locate(directory: Path) -> Path | None:
    """The extracted `stl10_binary/` folder (or `directory` itself) or the archive, else None."""
    for candidate in (directory / FOLDER, directory):
        if (candidate / "test_X.bin").is_file() or (candidate / "train_X.bin").is_file():
            return candidate
    archive = directory / ARCHIVE
    return archive if archive.is_file() else None


def _read_members(source: Path, readers: dict[str, Reader]) -> dict[str, torch.Tensor]:
    """Apply each reader to its member file of the folder or archive `source`."""
    if source.is_dir():
        results = {}
        for name, reader in readers.items():
            path = source / name
            if not path.is_file():
                raise DatasetError(f"{path}: missing; extract the complete {ARCHIVE} there")
            with open(path, "rb") as f:
                results[name] = reader(f, path.stat().st_size, str(path))
        return results
    return _read_archive_members(source, readers)


def _read_archive_members(archive: Path, readers: dict[str, Reader]) -> dict[str, torch.Tensor]:
    """Stream the .tar.gz once, applying each reader to its member as it passes."""
    logger.warning("reading STL-10 from %s without extracting is slow; extract it once "
                   "(tar xzf %s) for repeated use", archive, ARCHIVE)
    results = {}
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for info in tar:
                name = info.name.removeprefix("./").removeprefix(f"{FOLDER}/")
                if name in readers and name not in results and info.isfile():
                    results[name] = readers[name](tar.extractfile(info), info.size,
                                                  f"{archive}:{info.name}")
                    if len(results) == len(readers):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive}: cannot read the archive ({err}); it is truncated or "
                           f"corrupt — re-download it (md5 {MD5})") from err
    missing = sorted(set(readers) - set(results))
    if missing:
        raise DatasetError(f"{archive}: has no member {FOLDER}/{', '.join(missing)}; this is not "
                           f"the official {ARCHIVE}")
    return results
