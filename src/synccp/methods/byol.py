"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020, https://arxiv.org/abs/2006.07733).

Defaults: solo-learn's CIFAR recipe, `scripts/pretrain/cifar/byol.yaml` (vturrisi/solo-learn):
projector 4096 → 256, predictor hidden 4096, τ from 0.99 to 1.0 on the cosine schedule (the paper
uses τ_base 0.996 for ImageNet). Heads are Linear-BN-ReLU-Linear (paper §3.3).
"""

from __future__ import annotations

from torch import Tensor, nn

from synccp.losses import byol_loss
from synccp.methods.base import Encode, MomentumMethod, check_options
from synccp.models.heads import mlp


class BYOL(MomentumMethod):
    """Online predictor regresses the EMA target's projection of the other view, both ways.

    Loss = ℓ(p_a, sg z'_b) + ℓ(p_b, sg z'_a), the symmetrized L + L̃ of the paper (a sum, as in
    the paper and solo-learn), ℓ = 2 − 2·cos.
    """

    name = "byol"

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 4096,
                 proj_output_dim: int = 256, pred_hidden_dim: int = 4096,
                 base_tau: float = 0.99, final_tau: float = 1.0):
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau)
        check_options(proj_hidden_dim=proj_hidden_dim, proj_output_dim=proj_output_dim,
                      pred_hidden_dim=pred_hidden_dim)
        self.projector = mlp(self.feature_dim, proj_hidden_dim, proj_output_dim)
        self.predictor = mlp(proj_output_dim, pred_hidden_dim, proj_output_dim)
        self._make_targets()

    def training_loss(self, view_a: Tensor, view_b: Tensor, *, online: Encode,
                      second: Encode) -> Tensor:
        p_a = self.predictor(self.projector(online(view_a)))  # (B, P)
        p_b = self.predictor(self.projector(online(view_b)))  # (B, P)
        t_a = self.target_projections(view_a, second)  # (B, P), no grad
        t_b = self.target_projections(view_b, second)  # (B, P), no grad
        return byol_loss(p_a, t_b) + byol_loss(p_b, t_a)
