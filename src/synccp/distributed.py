"""Thin helpers over `torch.distributed`; every function is the identity on a single process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialized process group (torchrun + `init_process_group`)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' `x` concatenated along dim 0, rank order, without gradient: (W·B, ...)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Each rank's loss uses the other ranks' samples (e.g. as negatives), so the gradient of the
    global loss w.r.t. the local slice has a term from every rank: backward all-reduces the
    gradient of the gathered tensor and returns this rank's slice. With DDP's gradient averaging
    this gives exactly the single-process gradient of the loss averaged over the global batch.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)  # (W·B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        size = grad.shape[0] // world_size()
        return grad[rank() * size:(rank() + 1) * size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' `x` concatenated along dim 0 (rank order), differentiable w.r.t. the local `x`.

    Every rank must pass the same shape. Returns `x` itself when not distributed.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)
