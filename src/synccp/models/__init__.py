"""Backbones (ResNet-18/34/50), projector/predictor heads and the EMA target."""

from synccp.models.ema import cosine_tau, ema_update_, frozen_copy
from synccp.models.heads import mlp
from synccp.models.resnet import ResNet, build_backbone, prunable_parameters

__all__ = ["ResNet", "build_backbone", "cosine_tau", "ema_update_", "frozen_copy", "mlp",
           "prunable_parameters"]
