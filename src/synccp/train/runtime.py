"""The run's runtime: device, bf16 autocast, channels_last and the DistributedDataParallel choice.

Under torchrun (DESIGN.md §2) the run is one replica per process: the method is wrapped in
DistributedDataParallel (optionally with SyncBatchNorm) and everything else follows from
identical all-reduced gradients.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch
from torch import nn

from synccp import distributed


@dataclass(frozen=True)
class Runtime:
    """Where and how a step computes; `rank` of `world_size` processes."""

    device: torch.device
    bf16: bool
    channels_last: bool
    rank: int = 0
    world_size: int = 1

    def autocast(self):
        """bf16 autocast on the device, or nothing."""
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def layout(self, views: torch.Tensor) -> torch.Tensor:
        """`views` in the memory format the model runs in (channels_last on GPU and with bf16)."""
        return views.contiguous(memory_format=torch.channels_last) if self.channels_last else views


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; `cuda` without a GPU is an error naming the key.
    Under torchrun on CUDA each process gets its own GPU (the current device, `LOCAL_RANK`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available")
    if name == "cuda" and distributed.is_distributed():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for `train.precision`: `bf16` on any device (on CPUs with AMX/AVX-512 bf16
    oneDNN trains 2.3x faster, docs/results.md), `auto` on CUDA only, `fp32` never."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def make_runtime(precision: str, device: torch.device) -> Runtime:
    """The runtime of this process for `train.precision` on `device`."""
    bf16 = use_bf16(precision, device)
    return Runtime(device=device, bf16=bf16, channels_last=bf16 or device.type == "cuda",
                   rank=distributed.rank(), world_size=distributed.world_size())


def replicate(method: nn.Module, device: torch.device) -> nn.Module | None:
    """DistributedDataParallel over the method (forward: `training_loss`); None on one process.

    Target parameters take no gradient, so DDP leaves them alone. Buffers are not broadcast every
    step (`broadcast_buffers=False`): BatchNorm running statistics never enter a training forward,
    and a MoCo queue is identical on every rank by construction; the loop copies rank 0's buffers
    to every rank at each checkpoint instead."""
    if distributed.world_size() == 1:
        return None
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.12 renamed the switch (its version still syncs once at construction, which is fine)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else "broadcast_buffers")
    device_ids = [device.index] if device.type == "cuda" else None
    return ddp(method, device_ids=device_ids, **{no_sync: False})


def sync_batchnorm(method: nn.Module, device: torch.device, *, enabled: bool) -> nn.Module:
    """`train.sync_bn`: BatchNorm statistics over the global batch (every BatchNorm, targets too).

    Applied inside any process group, one of a single process too (there it computes plain
    batch statistics: how benchmarks/gpu_check.sh checks it on one GPU)."""
    if not enabled or not distributed.is_distributed():
        return method
    if device.type != "cuda":
        raise ValueError("train.sync_bn=true needs CUDA devices: torch.nn.SyncBatchNorm has no CPU "
                         "kernel (with gloo on CPU, BatchNorm statistics stay per process)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(method)
