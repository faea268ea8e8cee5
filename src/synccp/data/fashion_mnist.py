"""Fashion-MNIST from the official IDX files (gzip-compressed or not).

Files: `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
`t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`
(https://github.com/zalandoresearch/fashion-mnist). IDX format: a big-endian uint32 magic number
(2051 for images: ubyte, 3 dims; 2049 for labels: ubyte, 1 dim), one big-endian uint32 per
dimension, then the bytes row-major. Offline, Debian's package
`dataset-fashion-mnist` puts the files in /usr/share/datasets/fashion-mnist.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from synccp.data.datasets import (
    DatasetError,
    ImageDataset,
    cache_dir,
    candidate_dirs,
    find_first,
    label_tensor,
    searched,
)
from synccp.data.download import DownloadError, download

logger = logging.getLogger(__name__)

NAME = "fashion_mnist"
NUM_CLASSES = 10
MEAN = (0.2860,)
STD = (0.3530,)
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_PREFIX = {"train": "train", "test": "t10k"}

URLS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
# MD5 of the official .gz files, as published in the Fashion-MNIST README ("Get the Data").
GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# SHA-256 of the *decompressed* IDX content, computed here from Debian's dataset-fashion-mnist
# (0.0~git20200523). Debian re-gzipped the files, so their .gz bytes differ from the official
# ones, but their decompressed MD5s (f4a8712d…, 9018921c…, 8181f547…, 15d48437…) equal the
# decompressed MD5s that third parties publish for the official archives.
CONTENT_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
HOW_TO_GET = ("install Debian's package (apt-get install dataset-fashion-mnist), or put the four "
              "official IDX files (https://github.com/zalandoresearch/fashion-mnist#get-the-data) "
              "in a directory and set data.root (or $SYNCCP_DATA) to it")


def load_fashion_mnist(split: str, *, root: str | None = None) -> ImageDataset:
    """Fashion-MNIST `split` ("train" | "test") as uint8 `(N, 1, 28, 28)` images and labels."""
    prefix = _PREFIX[split]
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    dirs = candidate_dirs(NAME, root, SYSTEM_DIRS)
    paths = find_first(dirs, lambda d: _split_files(d, stems))
    if paths is None:
        paths = _download_or_explain(stems, dirs, explicit_root=bool(root))
    images_path, labels_path = paths
    images = read_idx(images_path, magic=IMAGES_MAGIC)       # (N, H, W) uint8
    labels = read_idx(labels_path, magic=LABELS_MAGIC)       # (N,) uint8
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                           f"{labels.shape[0]} labels; the files belong to different splits")
    logger.info("loaded fashion_mnist %s: %d images from %s", split, len(labels), images_path)
    return ImageDataset(
        images=torch.from_numpy(images.copy()).unsqueeze(1),    # (N, 1, H, W)
        labels=label_tensor(labels, num_classes=NUM_CLASSES, source=str(labels_path)),
        num_classes=NUM_CLASSES, mean=MEAN, std=STD, name=NAME)


def read_idx(path: Path, *, magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (gzip or raw); check magic, dims and byte count."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DatasetError(f"{path}: only {len(raw)} bytes, not an IDX file; re-download it")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DatasetError(f"{path}: IDX magic number is {found}, expected {magic} ({kind}); "
                           f"the file is not an IDX {kind} file or is corrupt — re-download it")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(raw)} bytes); re-download it")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DatasetError(f"{path}: {len(raw)} bytes, but its IDX dims {dims} need {expected}; "
                           "the file is truncated or corrupt — re-download it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    """The content of `path`, decompressed when it ends in .gz."""
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{path}: cannot read ({err}); the file is truncated or corrupt — "
                           "re-download it") from err


def _split_files(directory: Path, stems: tuple[str, str]) -> tuple[Path, Path] | None:
    """Paths of the images and labels files in `directory` (raw preferred over .gz), or None."""
    found = []
    for stem in stems:
        options = [directory / stem, directory / f"{stem}.gz"]
        existing = [p for p in options if p.is_file()]
        if not existing:
            return None
        found.append(existing[0])
    return found[0], found[1]


def _download_or_explain(stems: tuple[str, str], dirs: list[Path],
                         explicit_root: bool) -> tuple[Path, Path]:
    """Download the split's two files into the cache, or raise a DatasetError saying how to fix."""
    needed = " and ".join(f"{s}[.gz]" for s in stems)
    if explicit_root:
        raise DatasetError(f"Fashion-MNIST files {needed} not found in data.root (looked in "
                           f"{searched(dirs)}); fix data.root, or {HOW_TO_GET}")
    target = cache_dir(NAME)
    try:
        paths = [download([url + f"{s}.gz" for url in URLS], target / f"{s}.gz",
                          md5=GZ_MD5[s], content_sha256=CONTENT_SHA256[s]) for s in stems]
    except DownloadError as err:
        raise DatasetError(f"Fashion-MNIST files {needed} not found (looked in {searched(dirs)}) "
                           f"and the download failed ({err}); {HOW_TO_GET}") from err
    return paths[0], paths[1]
