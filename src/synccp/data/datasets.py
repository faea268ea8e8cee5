"""The in-memory dataset type, its error, the `load_dataset` dispatcher and the data-root search.

Every loader returns the whole split as one uint8 tensor `(N, C, H, W)` plus int64 labels `(N,)`
(`-1` = unlabeled). Where a loader looks for files, in this order:

1. `root` (the `data.root` config key), and `root/<dataset dir>`; when `root` is given, nothing
   else is searched, so a mistyped root fails loudly instead of silently using another copy;
2. `$SYNCCP_DATA` and `$SYNCCP_DATA/<dataset dir>`;
3. system directories of the dataset (e.g. Debian's `/usr/share/datasets/fashion-mnist`);
4. the user cache `cache_dir()/<dataset dir>` (`$SYNCCP_CACHE`, else `$XDG_CACHE_HOME/synccp`,
   else `~/.cache/synccp`), where downloads go.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

# name -> (module, loader function, allowed splits)
_LOADERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "fashion_mnist": ("synccp.data.fashion_mnist", "load_fashion_mnist", ("train", "test")),
    "cifar10": ("synccp.data.cifar", "load_cifar10", ("train", "test")),
    "cifar100": ("synccp.data.cifar", "load_cifar100", ("train", "test")),
    "stl10": ("synccp.data.stl10", "load_stl10",
              ("train", "test", "unlabeled", "train+unlabeled")),
    "image_folder": ("synccp.data.image_folder", "load_image_folder", ("train", "test")),
}
_RESIZE_CHUNK = 1024  # images resized at a time, bounds the float32 working memory


class DatasetError(ValueError):
    """A dataset file, field or argument is missing or invalid; the message names it and the fix."""


@dataclass(frozen=True)
class ImageDataset:
    """One split of a dataset, held in memory.

    `mean` / `std` are per-channel statistics in [0, 1] used to normalize augmented batches; for
    the standard datasets they are the usual published constants, for image folders they are
    computed from the data.
    """

    images: torch.Tensor      # (N, C, H, W) uint8
    labels: torch.Tensor      # (N,) int64, -1 = unlabeled
    num_classes: int
    mean: tuple[float, ...]   # (C,)
    std: tuple[float, ...]    # (C,)
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(f"{self.name}: images must be a uint8 (N, C, H, W) tensor, got "
                               f"{self.images.dtype} with shape {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise DatasetError(f"{self.name}: labels must be int64 of shape "
                               f"({self.images.shape[0]},), got {self.labels.dtype} with shape "
                               f"{tuple(self.labels.shape)}")
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DatasetError(f"{self.name}: mean/std need {channels} channel values, got "
                               f"mean={self.mean}, std={self.std}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]


def load_dataset(name: str, split: str, *, root: str | None = None,
                 image_size: int | None = None) -> ImageDataset:
    """Load split `split` of dataset `name` into memory, optionally resized to `image_size`.

    name: fashion_mnist | cifar10 | cifar100 | stl10 | image_folder. split: "train" | "test";
    stl10 also "unlabeled" and "train+unlabeled". `image_size` resizes square datasets once
    (bilinear, antialiased) when it differs from the native size; for image folders it is the
    decode size (default 64).
    """
    if name in ("imagenet", "imagenet100"):
        raise DatasetError(
            f"data.name={name!r} is streamed from disk (synccp.data.stream.load_stream) and "
            "cannot be loaded into memory; pretrain with --no-eval and probe its encoder "
            "on a smaller labelled set"
        )
    if name not in _LOADERS:
        raise DatasetError(f"data.name must be one of {sorted(_LOADERS)}, got {name!r}")
    module_name, function_name, splits = _LOADERS[name]
    if split not in splits:
        raise DatasetError(
            f"split of data.name={name!r} must be one of {list(splits)}, got {split!r}"
        )
    if image_size is not None and (not isinstance(image_size, int) or image_size <= 0):
        raise DatasetError(f"data.image_size must be a positive integer, got {image_size!r}")
    loader = getattr(importlib.import_module(module_name), function_name)
    if name == "image_folder":
        return loader(split, root=root, image_size=image_size)
    dataset = loader(split, root=root)
    height, width = dataset.images.shape[-2:]
    if image_size is not None and (height, width) != (image_size, image_size):
        logger.info(
            "resizing %s %s from %dx%d to %dx%d", name, split, height, width, image_size, image_size
        )
        dataset = replace(dataset, images=resize_images(dataset.images, image_size))
    return dataset


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of uint8 `(N, C, H, W)` to uint8 `(N, C, size, size)`."""
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()  # (B, C, H, W)
        chunk = torch.nn.functional.interpolate(
            chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        out[start : start + _RESIZE_CHUNK] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] of uint8 `(N, C, H, W)` images (population std)."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].double().div_(255.0)  # (B, C, H, W)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = max(images.numel() // max(channels, 1), 1)
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_(min=0.0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def cache_dir(*parts: str) -> Path:
    """The synccp cache: `$SYNCCP_CACHE`, else `$XDG_CACHE_HOME/synccp`, else `~/.cache/synccp`."""
    if os.environ.get("SYNCCP_CACHE"):
        base = Path(os.environ["SYNCCP_CACHE"]).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "synccp"
    else:
        base = Path.home() / ".cache" / "synccp"
    return base.joinpath(*parts)


def candidate_dirs(
    dataset_dir: str, root: str | None, system_dirs: Sequence[str] = ()
) -> list[Path]:
    """Directories to search for a dataset, in the order of this module's docstring."""
    if root:
        base = Path(root).expanduser()
        return [base, base / dataset_dir]
    dirs: list[Path] = []
    if os.environ.get("SYNCCP_DATA"):
        env = Path(os.environ["SYNCCP_DATA"]).expanduser()
        dirs += [env, env / dataset_dir]
    dirs += [Path(d) for d in system_dirs]
    dirs.append(cache_dir(dataset_dir))
    return dirs


def find_first(dirs: Sequence[Path], probe: Callable[[Path], object | None]) -> object | None:
    """The first non-None `probe(d)` over the existing directories `dirs`, else None."""
    for directory in dirs:
        if directory.is_dir():
            found = probe(directory)
            if found is not None:
                logger.debug("dataset files found in %s", directory)
                return found
    return None


def searched(dirs: Sequence[Path]) -> str:
    """The searched directories as one line for error messages."""
    return ", ".join(str(d) for d in dirs)


def label_tensor(values, *, num_classes: int, source: str, offset: int = 0) -> torch.Tensor:
    """int64 labels `(N,)` from integers in [offset, offset + num_classes), shifted to 0-based."""
    labels = torch.from_numpy(np.array(values, dtype=np.int64).reshape(-1)) - offset  # (N,)
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item() + offset
        raise DatasetError(
            f"{source}: label {bad} is outside [{offset}, "
            f"{offset + num_classes - 1}]; the file is corrupt — re-download it"
        )
    return labels
