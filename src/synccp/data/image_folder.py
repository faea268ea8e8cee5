"""Image folders: `root/train/<class>/*.png|jpg|jpeg|bmp` and `root/test/<class>/...`.

A flat `root/<class>/...` (no `train/` directory) is accepted for the "train" split only. Classes
are the sorted sub-directory names of the training directory; test images of a class the training
directory lacks are an error. Every image is decoded once with Pillow (EXIF orientation applied),
converted to RGB — or to L when every image under `root` is grayscale — resized so its shorter
side is `image_size` and center-cropped to a square. The decoded split is cached as a uint8 tensor
in `cache_dir()/image_folder/<key>.pt`, where the key hashes the root, the split, the size and the
path, size and mtime of every image under `root`, so any change to the folder rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from synccp.data.datasets import DatasetError, ImageDataset, cache_dir, channel_stats

logger = logging.getLogger(__name__)

NAME = "image_folder"
DEFAULT_IMAGE_SIZE = 64
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")
_CACHE_VERSION = 1


def load_image_folder(split: str, *, root: str | None = None,
                      image_size: int | None = None) -> ImageDataset:
    """Decode (or load from cache) `split` of the image folder at `root`.

    Returns uint8 `(N, C, S, S)` images, C = 3 (RGB) or 1 (all grayscale), S = `image_size`
    (default 64); mean/std are computed from this split's pixels.
    """
    if not root:
        raise DatasetError("data.root must name the image folder for data.name='image_folder'")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"data.root={root!r} is not a directory")
    size = image_size or DEFAULT_IMAGE_SIZE
    classes = _classes(base)
    files, labels = _split_files(base, split, classes)
    every_image = _all_images(base)
    cache = cache_dir(NAME) / f"{_cache_key(base, split, size, every_image)}.pt"
    state = _load_cache(cache, count=len(files), num_classes=len(classes), size=size)
    if state is None:
        mode = "L" if all(_image_mode(p) in GRAYSCALE_MODES for p in every_image) else "RGB"
        images = _decode_all(files, size, mode)                     # (N, C, S, S)
        mean, std = channel_stats(images)
        state = {"images": images, "labels": torch.tensor(labels, dtype=torch.int64),
                 "mean": list(mean), "std": list(std)}
        _save_atomic(state, cache)
    logger.info("image_folder %s: %d images, %d classes, from %s", split, len(labels),
                len(classes), base)
    return ImageDataset(images=state["images"], labels=state["labels"], num_classes=len(classes),
                        mean=tuple(state["mean"]), std=tuple(state["std"]), name=NAME)


def _split_dir(base: Path, split: str) -> Path:
    """The directory holding `split`'s class directories."""
    if (base / "train").is_dir():
        directory = base / split
        if not directory.is_dir():
            raise DatasetError(f"{directory}: missing; the image folder has train/ but no "
                               f"{split}/ — add {split}/<class>/ directories")
        return directory
    if split != "train":
        raise DatasetError(f"{base}: flat layout <root>/<class>/ holds only a train split; for "
                           f"split {split!r} use <root>/train/<class>/ and <root>/{split}/<class>/")
    return base


def _classes(base: Path) -> list[str]:
    """Sorted class names: the sub-directories of the training directory."""
    train_dir = _split_dir(base, "train")
    classes = [p.name for p in _subdirs(train_dir)]
    if not classes:
        raise DatasetError(f"{train_dir}: no class directories; expected {train_dir}/<class>/"
                           f"*.{{{','.join(e[1:] for e in EXTENSIONS)}}}")
    return classes


def _split_files(base: Path, split: str, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Image paths of `split` (sorted by class, then name) and their class indices."""
    directory = _split_dir(base, split)
    index = {name: i for i, name in enumerate(classes)}
    files, labels = [], []
    for class_dir in _subdirs(directory):
        if class_dir.name not in index:
            raise DatasetError(f"{class_dir}: class {class_dir.name!r} does not exist in the "
                               f"training directory (classes: {classes})")
        for path in _images_in(class_dir):
            files.append(path)
            labels.append(index[class_dir.name])
    if not files:
        raise DatasetError(f"{directory}: no images with extensions {', '.join(EXTENSIONS)}")
    return files, labels


def _images_in(directory: Path) -> list[Path]:
    """Sorted image files directly inside `directory` (hidden files skipped)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in EXTENSIONS)


def _all_images(base: Path) -> list[Path]:
    """Every image file of every split under `base` (they decide the color mode and cache key)."""
    splits = _subdirs(base) if (base / "train").is_dir() else [base]
    return [path for split_dir in splits for class_dir in _subdirs(split_dir)
            for path in _images_in(class_dir)]


def _subdirs(directory: Path) -> list[Path]:
    """Sorted non-hidden sub-directories of `directory`."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _cache_key(base: Path, split: str, size: int, every_image: list[Path]) -> str:
    """Hash of everything the decoded tensor depends on."""
    stats = [(str(p.relative_to(base)), p.stat().st_size, p.stat().st_mtime_ns)
             for p in every_image]
    blob = json.dumps([_CACHE_VERSION, str(base.resolve()), split, size, stats])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _image_mode(path: Path) -> str:
    """Pillow mode of the image at `path` from its header."""
    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: cannot read image ({err}); delete or replace it") from err


def _decode_all(files: list[Path], size: int, mode: str) -> torch.Tensor:
    """Decode every file to uint8 `(N, C, size, size)` in `mode` ("RGB" or "L")."""
    channels = 3 if mode == "RGB" else 1
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, path in enumerate(files):
        pixels = _decode(path, size, mode).reshape(size, size, channels)   # (S, S, C)
        out[i] = torch.from_numpy(pixels).permute(2, 0, 1)                 # (C, S, S)
    return out


def _decode(path: Path, size: int, mode: str) -> np.ndarray:
    """One image: EXIF-oriented, converted to `mode`, shorter side → `size`, center crop."""
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image).convert(mode)
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
            return np.array(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: cannot decode image ({err}); delete or replace it") from err


def _load_cache(path: Path, *, count: int, num_classes: int, size: int) -> dict | None:
    """The cached decoded split (`count` images), or None when absent, unreadable or not a split."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged (or code-carrying) cache is rebuilt, never fatal
        logger.warning("ignoring unreadable cache %s (%s)", path, str(err).splitlines()[0][:200])
        return None
    problem = _cache_problem(state, (count, size), num_classes)
    if problem is not None:
        logger.warning("ignoring cache %s: %s; decoding the images again", path, problem)
        return None
    logger.debug("image_folder cache hit %s", path)
    return state


def _cache_problem(state: object, shape: tuple[int, int], num_classes: int) -> str | None:
    """Why a loaded cache is not this decoded split (uint8 (N, C, S, S) images, (N, S) = `shape`;
    N int64 labels in [0, num_classes); C means and stds), or None."""
    count, size = shape
    if not isinstance(state, dict):
        return f"not a dict but {type(state).__name__}"
    images, labels = state.get("images"), state.get("labels")
    if (not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4
            or images.shape[0] != count or images.shape[1] not in (1, 3)
            or images.shape[2:] != (size, size)):
        return f"images are not a uint8 ({count}, 1 or 3, {size}, {size}) tensor"
    if not torch.is_tensor(labels) or labels.dtype != torch.int64 or labels.shape != (count,):
        return f"labels are not {count} int64 values"
    if count and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        return f"labels are outside [0, {num_classes})"
    for key in ("mean", "std"):
        values = state.get(key)
        if (
            not isinstance(values, list)
            or len(values) != images.shape[1]
            or not all(isinstance(v, float) and math.isfinite(v) for v in values)
        ):
            return f"{key} is not {images.shape[1]} finite numbers"
    return None


def _save_atomic(state: dict, path: Path) -> None:
    """torch.save `state` to `path` by `rundir.atomic_write` (temporary file, fsync, rename)."""
    from synccp.rundir.atomic import atomic_write

    atomic_write(path, lambda tmp: torch.save(state, tmp))