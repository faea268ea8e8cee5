"""Exponential-moving-average target networks (BYOL, Grill et al. 2020; MoCo, He et al. 2020).

BYOL §3.1 (https://arxiv.org/abs/2006.07733): the target parameters ξ are an exponential moving
average of the online parameters θ, ξ ← τξ + (1 − τ)θ; §3.3 anneals the decay rate as
τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2 over the K training steps. `cosine_tau` is that schedule
between arbitrary end points, as solo-learn's `MomentumUpdater.update_tau`
(solo/utils/momentum.py) writes it.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with parameters that take no gradient (initial target ξ = θ)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """ξ ← τ·ξ + (1 − τ)·θ on every parameter (raw weights); buffers are copied from `online`.

    Parameters and buffers are matched by name; the two modules must have the same structure.
    Copying buffers makes the target's BatchNorm running statistics those of the online network.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"EMA tau must be in [0, 1], got {tau}")
    online_params = dict(online.named_parameters())
    online_buffers = dict(online.named_buffers())
    for name, xi in target.named_parameters():
        xi.lerp_(online_params[name].to(xi.dtype), 1.0 - tau)  # ξ + (1−τ)(θ − ξ)
    for name, buffer in target.named_buffers():
        buffer.copy_(online_buffers[name])


def cosine_tau(step: int, total_steps: int, *, base: float, final: float) -> float:
    """EMA coefficient at optimizer step k of K: final − (final − base)·(cos(πk/K) + 1)/2.

    Equals `base` at k = 0 and `final` at k = K (k is clamped to [0, K]).
    """
    if total_steps < 1:
        raise ValueError(f"cosine_tau total_steps must be >= 1, got {total_steps}")
    progress = min(max(step, 0), total_steps) / total_steps
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
