"""Optimizers: SGD with momentum and LARS, with bias/norm parameters excluded from weight decay.

LARS follows You et al., "Large Batch Training of Convolutional Networks" (2017), as used by
BYOL/Barlow Twins/solo-learn: for every parameter that is not a bias or a norm parameter the
update direction g + λw is scaled by the trust ratio η‖w‖ / ‖g + λw‖ (1 when either norm is 0),
then fed to heavy-ball momentum. Biases and norm parameters get neither weight decay nor the
trust ratio.
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
    """SGD with momentum and layer-wise adaptive rate scaling (trust ratio η‖w‖/‖g + λw‖)."""

    def __init__(self, params, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, lars_exclude: bool = False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta,
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
                update = param.grad.add(param, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    update.mul_(_trust_ratio(param, update, group["eta"]))
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(update)
                param.add_(buf, alpha=-group["lr"])
        return loss


def _trust_ratio(param: torch.Tensor, update: torch.Tensor, eta: float) -> torch.Tensor:
    """η‖w‖/‖u‖ as a 0-d tensor (stays on device, no host sync); 1 where either norm is zero."""
    w_norm = torch.linalg.vector_norm(param)
    u_norm = torch.linalg.vector_norm(update)
    ratio = eta * w_norm / u_norm
    return torch.where((w_norm > 0) & (u_norm > 0), ratio, torch.ones_like(ratio))


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
