"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020, https://arxiv.org/abs/2002.05709).

Defaults: solo-learn's CIFAR recipe, `scripts/pretrain/cifar/simclr.yaml` (vturrisi/solo-learn):
projector 2048 → 256, temperature 0.2. The projector is g(h) = W2·σ(W1·h) (paper §2.1) without
BatchNorm, as solo-learn's `solo/methods/simclr.py`.
"""

from __future__ import annotations

from torch import Tensor, nn

from synccp.losses import nt_xent
from synccp.methods.base import Encode, SSLMethod, check_options
from synccp.models.heads import mlp


class SimCLR(SSLMethod):
    """NT-Xent between the projections of the two views; negatives = the other 2N − 2 views."""

    name = "simclr"
    shared_encoder = True

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 2048,
                 proj_output_dim: int = 256, temperature: float = 0.2):
        super().__init__(backbone)
        check_options(proj_hidden_dim=proj_hidden_dim, proj_output_dim=proj_output_dim,
                      temperature=temperature)
        self.temperature = temperature
        self.projector = mlp(self.feature_dim, proj_hidden_dim, proj_output_dim, hidden_bn=False)

    def training_loss(self, view_a: Tensor, view_b: Tensor, *, online: Encode,
                      second: Encode) -> Tensor:
        z_a = self.projector(online(view_a))  # (B, P)
        z_b = self.projector(second(view_b))  # (B, P)
        return nt_xent(z_a, z_b, temperature=self.temperature)
