"""The data stream of a run: the batch and the two augmented views of every optimizer step.

Like airbench's `CifarLoader`, the images live on the device as uint8 and a step's batch is an
index into them, augmented there. Epoch `e` visits a permutation drawn from (seed, e) — the same
on every rank — so a resumed run sees exactly the batches an uninterrupted one would; rank r
takes the r-th slice of each global batch; the last partial global batch is dropped. Each rank
has its own augmentation generator (`augmentation_seed`; rank 0 uses the seed itself, so a
one-process run is unchanged). A streamed dataset yields the same batches, decoded from disk by
its DataLoader workers (`StreamBatches`).
"""

from __future__ import annotations

import torch

from synccp.data.loader import StreamBatches
from synccp.data.views import ViewRecipe, make_view

_RANK_SEED_STEP = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads the ranks' seeds apart


def augmentation_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s augmentation generator: `seed` itself on rank 0."""
    return (seed + rank * _RANK_SEED_STEP) % 2**63


class ViewStream:
    """This process's batch and views of every step; `generator` is checkpointed state."""

    def __init__(self, *, images: torch.Tensor | None, stream: StreamBatches | None,
                 mean: tuple[float, ...], std: tuple[float, ...],
                 recipes: tuple[ViewRecipe, ViewRecipe], generator: torch.Generator, seed: int,
                 batch_size: int, steps_per_epoch: int, rank: int = 0, world_size: int = 1,
                 global_augment: bool = False, swap: bool = False):
        """`images`: (N, C, H, W) uint8 on the device, or None with a `stream`; `batch_size` is
        global (over all processes); `global_augment` augments the whole global batch on every
        rank and keeps this rank's slice; `swap` exchanges the views every other step (shared
        encoders: each view meets each mask equally often, DESIGN.md §1)."""
        self.images, self.stream = images, stream
        self.mean, self.std, self.recipes, self.generator = mean, std, recipes, generator
        self.seed, self.batch_size, self.steps_per_epoch = seed, batch_size, steps_per_epoch
        self.rank, self.world_size = rank, world_size
        self.global_augment, self.swap = global_augment, swap
        self._order: tuple[int, torch.Tensor] | None = None

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def batch(self, step: int) -> torch.Tensor:
        """(B / world_size, C, H, W) uint8 images of step `step`, or the whole global batch with
        `global_augment`."""
        if self.stream is not None:
            return self.stream.batch(step)
        epoch, index = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.images), generator=generator).to(self.images.device)
            self._order = (epoch, order)
        start = index * self.batch_size
        if not self.global_augment:
            start += self.rank * self.local_batch_size
        size = self.batch_size if self.global_augment else self.local_batch_size
        return self.images[self._order[1][start:start + size]]

    def local_slice(self, views: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch of views (`global_augment`): (B / world_size, ...)."""
        size = self.local_batch_size
        return views[self.rank * size:(self.rank + 1) * size]

    def views(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The two augmented, normalised views of this process's share of step `step`:
        2 × (B_local, C, S, S) float."""
        batch = self.batch(step)  # (B_local, C, H, W) uint8 on device; (B, ...) with global_augment
        first, second = (make_view(batch, recipe, mean=self.mean, std=self.std,
                                   generator=self.generator)
                         for recipe in self.recipes)
        if self.global_augment:
            first, second = self.local_slice(first), self.local_slice(second)  # (B_local, C, S, S)
        if self.swap and step % 2 == 1:
            return second, first
        return first, second
