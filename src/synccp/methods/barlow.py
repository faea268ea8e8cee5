"""Barlow Twins (Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
ICML 2021, https://arxiv.org/abs/2103.03230).

Defaults: solo-learn's CIFAR recipe, `scripts/pretrain/cifar/barlow.yaml` (vturrisi/solo-learn):
projector 2048 → 2048 with three layers (Linear-BN-ReLU, Linear-BN-ReLU, Linear; the 3-layer
shape of `solo/methods/barlow_twins.py`), `scale_loss` 0.1. λ = 0.0051 is solo-learn's default
`lamb` (the yaml does not set it; the paper's text gives λ = 5·10⁻³).
"""

from __future__ import annotations

from torch import Tensor, nn

from synccp.losses import barlow_twins
from synccp.methods.base import Encode, SSLMethod, check_options
from synccp.models.heads import mlp


class BarlowTwins(SSLMethod):
    """Drive the cross-correlation of the two views' projections to the identity."""

    name = "barlow"
    shared_encoder = True

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 2048,
                 proj_output_dim: int = 2048, lambda_offdiag: float = 0.0051, scale: float = 0.1):
        super().__init__(backbone)
        check_options(proj_hidden_dim=proj_hidden_dim, proj_output_dim=proj_output_dim,
                      lambda_offdiag=lambda_offdiag, scale=scale)
        self.lambda_offdiag = lambda_offdiag
        self.scale = scale
        self.projector = mlp(self.feature_dim, proj_hidden_dim, proj_output_dim, num_layers=3)

    def training_loss(self, view_a: Tensor, view_b: Tensor, *, online: Encode,
                      second: Encode) -> Tensor:
        z_a = self.projector(online(view_a))  # (B, P)
        z_b = self.projector(second(view_b))  # (B, P)
        return barlow_twins(z_a, z_b, lambda_offdiag=self.lambda_offdiag, scale=self.scale)
