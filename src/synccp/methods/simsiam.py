"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
https://arxiv.org/abs/2011.10566).

Defaults: solo-learn's CIFAR recipe, `scripts/pretrain/cifar/simsiam.yaml` (vturrisi/solo-learn):
projector 2048 → 2048 (three layers, BN on the output, as `solo/methods/simsiam.py` and the
paper's ImageNet projector), predictor bottleneck 512. (The yaml also sets `temperature: 0.2`,
which SimSiam does not use.)
"""

from __future__ import annotations

from torch import Tensor, nn

from synccp.losses import negative_cosine
from synccp.methods.base import Encode, SSLMethod, check_options
from synccp.models.heads import mlp


class SimSiam(SSLMethod):
    """L = D(p_a, sg z_b)/2 + D(p_b, sg z_a)/2 with a shared projector and predictor."""

    name = "simsiam"
    shared_encoder = True

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 2048,
                 proj_output_dim: int = 2048, pred_hidden_dim: int = 512):
        super().__init__(backbone)
        check_options(proj_hidden_dim=proj_hidden_dim, proj_output_dim=proj_output_dim,
                      pred_hidden_dim=pred_hidden_dim)
        self.projector = mlp(self.feature_dim, proj_hidden_dim, proj_output_dim, num_layers=3,
                             last_bn=True)
        self.predictor = mlp(proj_output_dim, pred_hidden_dim, proj_output_dim)

    def training_loss(self, view_a: Tensor, view_b: Tensor, *, online: Encode,
                      second: Encode) -> Tensor:
        z_a = self.projector(online(view_a))  # (B, P)
        z_b = self.projector(second(view_b))  # (B, P)
        p_a, p_b = self.predictor(z_a), self.predictor(z_b)  # (B, P) each
        return negative_cosine(p_a, z_b) / 2 + negative_cosine(p_b, z_a) / 2
