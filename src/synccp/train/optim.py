"""Optimizers: SGD with momentum and LARS, with bias/norm parameters excluded from weight decay.

LARS is solo-learn's (vturrisi/solo-learn, `solo/utils/lars.py`, class `LARS`, as its CIFAR and
ImageNet yamls use it: `eta: 0.02, clip_lr: True, exclude_bias_n_norm: True`), after You et al.,
"Large Batch Training of Convolutional Networks" (2017). For every parameter that is not a bias or
a norm parameter, with g the raw gradient and λ the weight decay:

    local = η‖w‖ / (‖g‖ + λ‖w‖ + ε)                     (ε = 1e-8; only when ‖w‖ > 0 and ‖g‖ > 0)
    local = min(local / lr, 1)                          (clip_lr)
    u     = (g + λw) · local                            (else u = g: no decay, no scaling)
    buf   = μ·buf + u;   w ← w − lr·buf

so the effective step is min(trust, lr)·(g + λw). Biases and norm parameters (1-D) get u = g:
neither weight decay nor scaling (`exclude_bias_n_norm`). Like solo-learn, a parameter whose
weight or gradient norm is 0 gets u = g too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def parameter_groups(modules: Iterable[nn.Module], *, weight_decay: float) -> list[dict]:
    """Split trainable parameters into a decayed group (conv/linear weights) and an excluded group.

    A parameter is excluded (no weight decay, no LARS adaptation) when it is 1-D: biases and the
    affine parameters of BatchNorm/LayerNorm.
    """
    decay, exclude = [], []
    seen: set[int] = set()
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (exclude if param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": exclude, "weight_decay": 0.0, "lars_exclude": True},
    ]


class LARS(torch.optim.Optimizer):
    """SGD with momentum and solo-learn's clipped layer-wise trust ratio (module docstring)."""

    def __init__(self, params, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, eps: float = 1e-8, lars_exclude: bool = False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, eps=eps,
                        lars_exclude=lars_exclude)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                update = param.grad if group["lars_exclude"] else _lars_update(param, group)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update)
                param.add_(buf, alpha=-group["lr"])
        return loss


def _lars_update(param: torch.Tensor, group: dict) -> torch.Tensor:
    """(g + λw)·min(η‖w‖ / ((‖g‖ + λ‖w‖ + ε)·lr), 1); plain g where ‖w‖ or ‖g‖ is 0. The ratio stays
    a 0-d tensor on the device (no host sync)."""
    grad, decay, lr = param.grad, group["weight_decay"], group["lr"]
    w_norm = torch.linalg.vector_norm(param)
    g_norm = torch.linalg.vector_norm(grad)
    local = group["eta"] * w_norm / (g_norm + decay * w_norm + group["eps"])
    local = torch.clamp(local / lr, max=1.0) if lr > 0 else torch.ones_like(local)
    live = (w_norm > 0) & (g_norm > 0)
    scaled = grad.add(param, alpha=decay).mul_(local)
    return torch.where(live, scaled, grad)


def build_optimizer(name: str, modules: Iterable[nn.Module], *, lr: float, momentum: float,
                    weight_decay: float, eta: float) -> torch.optim.Optimizer:
    """SGD (nesterov off) or LARS over `modules`, biases and norm parameters excluded from decay."""
    groups = parameter_groups(modules, weight_decay=weight_decay)
    if name == "sgd":
        for group in groups:
            group.pop("lars_exclude")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, eta=eta)
    raise ValueError(f"train.optimizer must be sgd or lars, got {name!r}")
