"""Image folders streamed from disk: decoded on the fly by DataLoader workers, uint8 batches.

For folders far larger than memory (ImageNet). The split's files are listed once (`index.py`);
each training step's images are decoded by `data.workers` DataLoader worker processes with Pillow
(JPEGs through its DCT-domain downscaling, `Image.draft`, then EXIF orientation, RGB, shorter side
to `image_size` and a center crop, as the in-memory image folder), collated into a uint8
`(B, 3, S, S)` batch, pinned when the batches go to a GPU, and moved to the device; the loop then
applies the usual on-device augmentations. Memory is bounded by the batches in flight
(`workers × prefetch` of them), whatever the size of the folder.

Batches follow exactly the in-memory order (`TrainingSetup.batch`): epoch e visits the
permutation drawn from (seed, e), rank r takes the r-th slice of each global batch, the last
partial batch is dropped; a resumed run restarts the stream at its step.

Unreadable images: `data.on_corrupt="error"` stops with an error naming the file;
`"skip"` logs the file by name (once) and uses the next readable image of the index in its place,
so every batch keeps its size and the order stays deterministic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler

from synccp.data import imagenet
from synccp.data.datasets import DatasetError, channel_stats
from synccp.data.image_folder import _classes, _split_dir
from synccp.data.index import FileIndex, build_index

logger = logging.getLogger(__name__)

STREAMED = ("imagenet", "imagenet100")  # data.name values that always stream
ON_CORRUPT = ("error", "skip")
_MAX_SUBSTITUTES = 64  # consecutive unreadable images tolerated by "skip"
_STATS_SAMPLE = 256  # images decoded to estimate a plain folder's mean/std


@dataclass(frozen=True)
class StreamingDataset:
    """A split on disk: its index and what the augmentations need (no pixels)."""

    index: FileIndex
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    on_corrupt: str = "error"
    draft: bool = True
    channels: int = 3

    @property
    def num_classes(self) -> int:
        return len(self.index.classes)

    def __len__(self) -> int:
        return len(self.index)


def load_stream(name: str, split: str, *, root: str | None, image_size: int | None = None,
                subset: int = 0, on_corrupt: str = "error") -> StreamingDataset:
    """The streamed split `split` ("train" | "test") of `name` (imagenet, imagenet100, folder).

    `subset` > 0 keeps that many images evenly spaced over the index (every class represented),
    for quick runs. Image folders get their mean/std from 256 evenly spaced images."""
    if on_corrupt not in ON_CORRUPT:
        raise DatasetError(
            f"data.on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {on_corrupt!r}"
        )
    size = image_size or imagenet.DEFAULT_IMAGE_SIZE
    if name in STREAMED:
        base = imagenet.imagenet_root(root)
        classes = imagenet.imagenet_classes(name, base / "train")
        index = build_index(base, base / imagenet.SPLIT_DIRS[split], classes)
    elif name == "image_folder":
        if not root:
            raise DatasetError("data.root must name the image folder for data.name='image_folder'")
        base = Path(root).expanduser()
        if not base.is_dir():
            raise DatasetError(f"data.root={root!r} is not a directory")
        index = build_index(base, _split_dir(base, split), _classes(base))
    else:
        raise DatasetError(
            f"data.name={name!r} cannot be streamed; streaming reads "
            f"{', '.join(STREAMED)} and image_folder"
        )
    if subset:
        index = index.take(evenly_spaced(len(index), subset))
    data = StreamingDataset(
        index=index,
        image_size=size,
        mean=imagenet.MEAN,
        std=imagenet.STD,
        name=name,
        on_corrupt=on_corrupt,
    )
    if name == "image_folder":
        mean, std = channel_stats(_sample_images(data))
        data = StreamingDataset(
            index=index, image_size=size, mean=mean, std=std, name=name, on_corrupt=on_corrupt
        )
    return data


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """`min(count, total)` row numbers spread evenly over `range(total)`, ascending."""
    count = min(count, total)
    return (np.arange(count, dtype=np.int64) * total) // max(count, 1)


def _sample_images(data: StreamingDataset) -> torch.Tensor:
    images = FolderImages(data)
    items = [images[int(i)] for i in evenly_spaced(len(data), _STATS_SAMPLE)]
    errors = [e for item in items for e in item[3]]
    if errors:
        raise DatasetError(errors[0])
    return torch.stack([item[0] for item in items])  # (n, 3, S, S)


def decode(path: Path, size: int, *, draft: bool = True) -> np.ndarray:
    """One image as uint8 (S, S, 3): EXIF-oriented RGB, shorter side → `size`, center crop.

    With `draft`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both
    sides ≥ `size` (Pillow's `Image.draft`): 1.8x faster on 1200×900 photos at 224 px, no change
    on photos smaller than twice `size` (docs/scale.md)."""
    try:
        with Image.open(path) as image:
            if draft and image.format == "JPEG":
                image.draft("RGB", (size, size))
            image.load()
            image = ImageOps.exif_transpose(image).convert("RGB")
            image = ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(
            f"{path}: cannot decode image ({err}); delete or replace it, or set "
            f"data.on_corrupt='skip'"
        ) from err


class FolderImages(Dataset):
    """`dataset[i]` → (uint8 (3, S, S) image, label, unreadable images skipped for it, errors).

    A worker never raises for a bad file: with `on_corrupt="error"` the item carries the error
    message (and a blank image) and the training process raises it, naming the file, without a
    worker traceback around it."""

    def __init__(self, data: StreamingDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, tuple[str, ...], tuple[str, ...]]:
        d, skipped = self.data, []
        for k in range(_MAX_SUBSTITUTES):
            path = d.index.path((i + k) % len(d))
            try:
                pixels = decode(path, d.image_size, draft=d.draft)  # (S, S, 3)
            except DatasetError as err:
                if d.on_corrupt == "error":
                    blank = torch.zeros((d.channels, d.image_size, d.image_size), dtype=torch.uint8)
                    return blank, int(d.index.labels[i]), (), (str(err),)
                skipped.append(str(path))
                continue
            image = torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (3, S, S)
            return image, int(d.index.labels[i]), tuple(skipped), ()
        raise DatasetError(
            f"{d.index.root}: {_MAX_SUBSTITUTES} consecutive unreadable images from "
            f"{skipped[0]} on; the folder looks damaged"
        )


def collate(items):
    """One step's items → (uint8 (B, 3, S, S) images, int64 (B,) labels, skipped paths, errors)."""
    images = torch.stack([item[0] for item in items])
    labels = torch.tensor([item[1] for item in items], dtype=torch.int64)
    return (
        images,
        labels,
        tuple(p for item in items for p in item[2]),
        tuple(e for item in items for e in item[3]),
    )


class StepBatches(Sampler):
    """The index lists of steps `first`, `first` + 1, … (up to `last` - 1 when given): this
    rank's slice of each global batch."""

    def __init__(
        self,
        *,
        size: int,
        seed: int,
        batch_size: int,
        take: int,
        offset: int,
        steps_per_epoch: int,
        first: int,
        last: int | None = None,
    ):
        self.size, self.seed, self.batch_size = size, seed, batch_size
        self.take, self.offset = take, offset
        self.steps_per_epoch, self.first, self.last = steps_per_epoch, first, last

    def __len__(self) -> int:
        if self.last is None:
            raise TypeError("an unbounded StepBatches has no length")
        return max(self.last - self.first, 0)

    def __iter__(self):
        order = (-1, None)
        step = self.first
        while self.last is None or step < self.last:
            epoch, index = divmod(step, self.steps_per_epoch)
            if order[0] != epoch:  # the permutation of TrainingSetup.batch
                generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                order = (epoch, torch.randperm(self.size, generator=generator))
            start = index * self.batch_size + self.offset
            yield order[1][start : start + self.take].tolist()
            step += 1
