"""Frozen-feature extraction: the backbone in eval mode over deterministic (non-augmented) images."""

from __future__ import annotations

import torch
from torch import nn

from synccp.data.views import eval_transform


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, *, image_size: int,
                     mean: tuple[float, ...], std: tuple[float, ...], batch_size: int = 512,
                     device: torch.device | str = "cpu", bf16: bool = False) -> torch.Tensor:
    """Pooled features of `images` (N, C, H, W) uint8 → (N, D) float32 on CPU; BN uses running stats.

    `bf16`: bf16 autocast and channels_last inputs, as the run trained (`train.precision`)."""
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True)
        x = eval_transform(batch, image_size=image_size, mean=mean, std=std)  # (B, C, S, S)
        with autocast:
            chunks.append(backbone(x.contiguous(memory_format=layout)).float().cpu())  # (B, D)
    backbone.train(was_training)
    return torch.cat(chunks)


def raw_pixel_features(images: torch.Tensor, *, mean: tuple[float, ...],
                       std: tuple[float, ...]) -> torch.Tensor:
    """Flattened normalized pixels (N, C·H·W): the raw-pixel baseline every SSL number sits beside."""
    x = images.float() / 255.0  # (N, C, H, W)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((x - m) / s).flatten(1)
