"""Importance scores (nonnegative, the weight's shape): magnitude, its EMA, gradient, random.

Higher means more important. Each granularity pools them per unit (`granularity.unit_scores`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def magnitude(weight: Tensor) -> Tensor:
    """|w|: magnitude pruning (Zhu & Gupta 2017; Han et al. 2015)."""
    return weight.detach().abs()


def ema_magnitude_(ema: Tensor, weight: Tensor, *, beta: float) -> Tensor:
    """In place: ema ← β·ema + (1 − β)·|w| (SyncCP's smoothed score; β = 0 is plain magnitude).

    Call once per optimizer step. In-place tensor math: no allocation, no host synchronisation.
    β is validated once, by `SparsitySpec` (sparsity.score_ema in [0, 1)).
    """
    return ema.mul_(beta).add_(weight.detach().abs(), alpha=1.0 - beta)


def gradient_magnitude(grad: Tensor | None, like: Tensor) -> Tensor:
    """|∂L/∂w| of the dense gradient: RigL's growth criterion (Evci et al. 2020, §3 "Grow");
    zeros when the weight received no gradient."""
    if grad is None:
        return torch.zeros_like(like, memory_format=torch.contiguous_format)
    return grad.detach().abs()


def random_scores(shape: tuple[int, ...], *, generator: torch.Generator,
                  device: torch.device) -> Tensor:
    """Uniform [0, 1) scores drawn on the CPU from `generator`, then moved to `device`, so a seed
    gives the same random masks on every device (static sparse and RigL initialisation)."""
    return torch.rand(shape, generator=generator).to(device)
