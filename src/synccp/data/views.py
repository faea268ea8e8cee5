"""The named view augmentations of the SSL methods and the functions that turn uint8 batches into
views. Which method uses which pair of augmentations is the method's row (`synccp.methods.rows`).

The recipes are solo-learn's CIFAR defaults (github.com/vturrisi/solo-learn,
`scripts/pretrain/cifar/<method>.yaml` and the `augmentations/*.yaml` file each one names). The
pipeline runs the same operations as solo-learn's `build_transform_pipeline`
(`solo/data/pretrain_dataloader.py`), batched on the device by `synccp.data.augment`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from synccp.data import augment, color


@dataclass(frozen=True)
class ViewRecipe:
    """The augmentations of one view; probabilities are per sample.

    Defaults are solo-learn's generic ones: crop area (0.08, 1), torchvision's aspect ratio
    range (3/4, 4/3), blur σ in [0.1, 2.0] (its GaussianBlur), PIL's solarize threshold 128.
    """

    crop_size: int
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    solarize_threshold: float = 128 / 255
    flip_prob: float = 0.5


# solo-learn scripts/pretrain/cifar/augmentations/symmetric.yaml (used by simclr.yaml):
# rrc 0.08-1.0, color_jitter prob 0.8 brightness 0.8 contrast 0.8 saturation 0.8 hue 0.2,
# grayscale 0.2, gaussian_blur 0.5, solarization 0.0, horizontal_flip 0.5, both crops.
_SYMMETRIC = dict(brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, jitter_prob=0.8,
                  grayscale_prob=0.2, blur_prob=0.5, solarize_prob=0.0, flip_prob=0.5)
# solo-learn scripts/pretrain/cifar/augmentations/symmetric_weak.yaml (mocov2plus.yaml,
# simsiam.yaml): as symmetric.yaml but brightness 0.4 contrast 0.4 saturation 0.4 hue 0.1.
_SYMMETRIC_WEAK = dict(_SYMMETRIC, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
# solo-learn scripts/pretrain/cifar/augmentations/asymmetric.yaml (byol.yaml, barlow.yaml):
# rrc 0.08-1.0, color_jitter prob 0.8 brightness 0.4 contrast 0.4 saturation 0.2 hue 0.1,
# grayscale 0.2, gaussian_blur 0.0, horizontal_flip 0.5; solarization 0.0 first, 0.2 second.
_ASYMMETRIC = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, jitter_prob=0.8,
                   grayscale_prob=0.2, blur_prob=0.0, solarize_prob=0.0, flip_prob=0.5)
# Note: solo-learn's older bash scripts (scripts/pretrain/cifar/{simclr,mocov2plus,simsiam}.sh)
# passed `--gaussian_prob 0.0 0.0`; the current YAML configs above enable blur with p = 0.5.
# We follow the YAML. BYOL/Barlow have no blur in both.
AUGMENTATIONS: dict[str, dict[str, float]] = {
    "symmetric": _SYMMETRIC,  # simclr (both views)
    "symmetric_weak": _SYMMETRIC_WEAK,  # mocov2, simsiam (both views)
    "asymmetric": _ASYMMETRIC,  # byol, barlow: first view
    "asymmetric_solarized": dict(_ASYMMETRIC, solarize_prob=0.2),  # byol, barlow: second view
}


def view_recipes(views: tuple[str, str], *, image_size: int,
                 channels: int) -> tuple[ViewRecipe, ViewRecipe]:
    """The two view recipes named `views` (keys of `AUGMENTATIONS`), crops of `image_size`.

    For 1-channel data saturation, hue and grayscale cannot act, so they are set to 0 and the
    recipe states what is actually applied.
    """
    unknown = [name for name in views if name not in AUGMENTATIONS]
    if unknown or len(views) != 2:
        raise ValueError(f"views must be two of {', '.join(AUGMENTATIONS)}, got {views!r}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    first, second = (ViewRecipe(crop_size=image_size, **AUGMENTATIONS[name]) for name in views)
    if channels == 1:
        first, second = (replace(v, saturation=0.0, hue=0.0, grayscale_prob=0.0)
                         for v in (first, second))
    return first, second


def make_view(images: Tensor, recipe: ViewRecipe, *, mean, std,
              generator: torch.Generator) -> Tensor:
    """One augmented, normalized view (B, C, S, S) float32 of a uint8 batch (B, C, H, W).

    Same device as `images`. Crop first so every later op runs on the S×S image, then flip,
    colour jitter, grayscale, blur, solarize and normalize. solo-learn flips last; flipping
    commutes with the pointwise ops and with the symmetric blur, so the distribution is the same.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be a (B, C, H, W) uint8 tensor, "
                         f"got {images.dtype} of shape {tuple(images.shape)}")
    r = recipe
    x = images.float().div_(255.0)  # (B, C, H, W)
    x = augment.random_resized_crop(x, size=r.crop_size, scale=r.crop_scale, ratio=r.crop_ratio,
                                    generator=generator)  # (B, C, S, S)
    x = augment.horizontal_flip(x, p=r.flip_prob, generator=generator)
    x = color.color_jitter(x, brightness=r.brightness, contrast=r.contrast,
                             saturation=r.saturation, hue=r.hue, p=r.jitter_prob,
                             generator=generator)
    x = augment.random_grayscale(x, p=r.grayscale_prob, generator=generator)
    x = augment.gaussian_blur(x, p=r.blur_prob, sigma=r.blur_sigma, generator=generator)
    x = augment.solarize(x, p=r.solarize_prob, threshold=r.solarize_threshold,
                         generator=generator)
    return augment.normalize(x, mean, std)


def eval_transform(images: Tensor, *, image_size: int, mean, std) -> Tensor:
    """Deterministic evaluation view (B, C, S, S) float32 of a uint8 batch (B, C, H, W).

    Images already S×S are only normalized (solo-learn's CIFAR eval: ToTensor + Normalize);
    others have their shorter side resized to S (bilinear, antialiased) and are center-cropped.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be a (B, C, H, W) uint8 tensor, "
                         f"got {images.dtype} of shape {tuple(images.shape)}")
    x = images.float().div_(255.0)  # (B, C, H, W)
    height, width = x.shape[-2:]
    if (height, width) != (image_size, image_size):
        short = min(height, width)
        new_h, new_w = round(height * image_size / short), round(width * image_size / short)
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                          antialias=True)  # (B, C, H', W')
        top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
        x = x[..., top:top + image_size, left:left + image_size]  # (B, C, S, S)
    return augment.normalize(x, mean, std)
