"""Projector and predictor heads: small MLPs on top of the backbone features.

Heads stay dense (DESIGN.md §1) and are shared by both branches of a shared-encoder method.
"""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, *, num_layers: int = 2, last_bn: bool = False,
        hidden_bn: bool = True) -> nn.Sequential:
    """``Linear-BN-ReLU`` × (num_layers − 1), then ``Linear`` (+ ``BN`` when `last_bn`).

    `hidden_bn=False` drops the hidden BatchNorms (``Linear-ReLU-...-Linear``: the SimCLR
    projection head g(h) = W2·σ(W1·h) of Chen et al. 2020, and MoCo v2's MLP head).
    A Linear that feeds a BatchNorm has no bias (the BN mean subtraction cancels it exactly).
    The final BN of `last_bn` is not affine (SimSiam's projector output, Chen & He 2021).
    Shapes: (B, in_dim) → (B, out_dim).
    """
    if num_layers < 1:
        raise ValueError(f"mlp num_layers must be >= 1, got {num_layers}")
    if min(in_dim, hidden_dim, out_dim) < 1:
        raise ValueError(f"mlp dimensions must be >= 1, got in_dim={in_dim}, "
                         f"hidden_dim={hidden_dim}, out_dim={out_dim}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers - 1):
        layers.append(nn.Linear(dim, hidden_dim, bias=not hidden_bn))
        if hidden_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)
