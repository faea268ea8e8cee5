"""Frozen-feature extraction: the backbone in eval mode over deterministic (non-augmented) images.

Fast path (docs/eval.md has the before/after figures): `torch.inference_mode`, large batches,
each BatchNorm folded into the conv before it (exact up to float rounding: the eval-mode BN is an
affine map per channel), channels_last activations (oneDNN's preferred conv layout on CPU, cuDNN's
with bf16 on GPU), and the run's precision (bf16 autocast where the run trained in bf16).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from synccp.data.views import eval_transform


def _conv_bn_pairs(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, bn attribute) for every conv directly followed by its BatchNorm:
    torchvision's naming (`convN`/`bnN`, `downsample.0`/`downsample.1`)."""
    pairs = []
    for parent in module.modules():
        names = dict(parent.named_children())
        for name, child in names.items():
            partner = (
                "1"
                if name == "0"
                else name.replace("conv", "bn", 1)
                if name.startswith("conv")
                else None
            )
            if isinstance(child, nn.Conv2d) and isinstance(names.get(partner), nn.BatchNorm2d):
                pairs.append((parent, name, partner))
    return pairs


def inference_copy(backbone: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of `backbone` with each BatchNorm folded into its conv (BN → Identity)."""
    model = copy.deepcopy(backbone).eval()
    for parent, conv_name, bn_name in _conv_bn_pairs(model):
        fused = fuse_conv_bn_eval(getattr(parent, conv_name), getattr(parent, bn_name))
        setattr(parent, conv_name, fused)
        setattr(parent, bn_name, nn.Identity())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def extract_features(
    backbone: nn.Module,
    images: torch.Tensor,
    *,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> torch.Tensor:
    """Pooled features of `images` (N, C, H, W) uint8 → (N, D) float32 on CPU; BN uses running
    stats (folded into the convs). `bf16`: bf16 autocast, as the run trained (`train.precision`)."""
    device = torch.device(device)
    model = inference_copy(backbone).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    chunks = []
    with torch.inference_mode(), autocast:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            x = eval_transform(batch, image_size=image_size, mean=mean, std=std)  # (B, C, S, S)
            chunks.append(
                model(x.contiguous(memory_format=torch.channels_last)).float().cpu()
            )  # (B, D)
    return torch.cat(
        chunks
    )  # outside inference mode: a normal tensor the linear probe can train on


def raw_pixel_features(
    images: torch.Tensor, *, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Flattened normalized pixels (N, C·H·W): the raw-pixel baseline beside every SSL number."""
    x = images.float() / 255.0  # (N, C, H, W)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((x - m) / s).flatten(1)
