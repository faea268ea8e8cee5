"""The training loop's view of a streamed dataset: `StreamBatches.batch(step)` → a uint8 batch.

A DataLoader over `StepBatches` (the exact batch order of the in-memory path) with `workers`
decoding processes, `prefetch` batches in flight per worker and pinned memory when the batches go
to a GPU. Asking for the step the stream expects next costs nothing extra; asking for any other
step (a resumed run, a benchmark) restarts the stream there.
"""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader

from synccp.data.datasets import DatasetError
from synccp.data.stream import FolderImages, StepBatches, StreamingDataset, collate

logger = logging.getLogger(__name__)


class StreamBatches:
    """This process's uint8 `(B_local, 3, S, S)` batch of every optimizer step, on `device`.

    Any step can be asked for, past the run's last one too (as the in-memory path allows); the
    workers decode at most `workers × prefetch` batches ahead of the step asked for."""

    def __init__(self, data: StreamingDataset, *, device: torch.device, seed: int, batch_size: int,
                 take: int, offset: int, steps_per_epoch: int, workers: int = 4, prefetch: int = 2):
        self.data, self.device = data, device
        self.sampler_args = dict(size=len(data), seed=seed, batch_size=batch_size, take=take,
                                 offset=offset, steps_per_epoch=steps_per_epoch)
        self.workers, self.prefetch = workers, prefetch
        self.skipped: set[str] = set()  # unreadable files met so far (data.on_corrupt="skip")
        self._iterator = None
        self._next = -1

    def batch(self, step: int) -> torch.Tensor:
        if self._iterator is None or step != self._next:
            self._iterator = iter(self._loader(first=step))
        images, _labels, skipped, errors = next(self._iterator)
        if errors:
            self._iterator = None
            raise DatasetError(errors[0])
        self._next = step + 1
        for path in skipped:
            if path not in self.skipped:
                self.skipped.add(path)
                logger.warning("skipped unreadable image %s (data.on_corrupt='skip'): the next "
                               "readable image of the folder takes its place", path)
        return images.to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the worker processes (they also stop when the stream is garbage-collected)."""
        self._iterator = None

    def _loader(self, *, first: int) -> DataLoader:
        sampler = StepBatches(first=first, **self.sampler_args)
        extra = {"prefetch_factor": self.prefetch} if self.workers else {}
        return DataLoader(FolderImages(self.data), batch_sampler=sampler, num_workers=self.workers,
                          collate_fn=collate, pin_memory=self.device.type == "cuda", **extra)
