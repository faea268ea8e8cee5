"""Batched, per-sample random image augmentations that run on the batch's device.

Every op takes a float batch `(B, C, H, W)` with values in [0, 1] and returns a new batch in [0, 1]
(except `normalize`). Each sample draws its own random parameters; all randomness comes from the
keyword `generator`, a `torch.Generator` on the batch's device (never the global RNG), so a view is
reproducible from a seed. Nothing here loops over samples in Python: one call costs a fixed number
of whole-batch kernels, which is what makes on-device augmentation fast (docs/augment.md).

Semantics follow torchvision's transforms (the reference solo-learn builds its pipelines from),
with the differences stated in each docstring.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, PIL's convert("L")
_CROP_TRIES = 10  # torchvision RandomResizedCrop.get_params tries 10 boxes before falling back


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p}")


def _check_range(name: str, bounds: tuple[float, float], *, low: float = 0.0) -> None:
    if len(bounds) != 2 or not low <= bounds[0] <= bounds[1]:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {bounds}")


def _uniform(shape, low: float, high: float, *, generator: torch.Generator, like: Tensor) -> Tensor:
    """Uniform samples in [low, high) with `like`'s device and dtype."""
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return low + (high - low) * u


def _coin(n: int, p: float, *, generator: torch.Generator, like: Tensor) -> Tensor:
    """(n,) bool: True with probability p, one independent draw per sample."""
    return torch.rand(n, generator=generator, device=like.device) < p


def _per_sample(mask: Tensor) -> Tensor:
    return mask.view(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)


def _at_least(x: Tensor, threshold: float) -> Tensor:
    """Float mask (1.0 / 0.0) of x >= threshold.

    Pixel-wise selections are written as arithmetic on float masks (`torch.lerp` with weights 0
    and 1 returns either end exactly) rather than `torch.where` on bool masks: on the 2-core CPU
    the bool path is ~15x slower per element than an add (docs/augment.md); on a GPU both are
    memory-bound and equal.
    """
    return torch.ge(x, threshold, out=torch.empty_like(x))


# ---------------------------------------------------------------------------------------------
# Random resized crop


def random_resized_crop(x: Tensor, *, size: int, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator) -> Tensor:
    """Crop a random box of each sample and resize it to `size`×`size` (bilinear).

    torchvision's RandomResizedCrop: "A crop of random size (default: of 0.08 to 1.0) of the
    original size and a random aspect ratio (default: of 3/4 to 4/3) of the original aspect ratio
    is made. This crop is finally resized to given size." Boxes are drawn like its `get_params`:
    area fraction uniform in `scale`, aspect ratio log-uniform in `ratio`, the first of 10 tries
    that fits, else a center crop with the ratio clamped into `ratio`; all tries of all samples
    are drawn at once. One `F.grid_sample` resamples every box: bilinear at pixel centres
    (`align_corners=False`), source positions clamped to the box, which equals cropping then
    `F.interpolate(mode="bilinear", align_corners=False)`. Boxes larger than `size` are not
    antialiased (kornia does the same; solo-learn's PIL bicubic does antialias). Measured faster
    on CPU than a separable two-matmul resize (docs/augment.md).
    """
    _check_range("scale", scale)
    _check_range("ratio", ratio, low=1e-6)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    top, left, height, width = _crop_boxes(x, scale=scale, ratio=ratio, generator=generator)
    k = (torch.arange(size, device=x.device, dtype=x.dtype) + 0.5) / size  # (S,)
    grid_x = _box_coordinates(left, width, x.shape[-1], k)  # (B, S)
    grid_y = _box_coordinates(top, height, x.shape[-2], k)  # (B, S)
    grid = torch.stack([grid_x.unsqueeze(1).expand(-1, size, -1),
                        grid_y.unsqueeze(2).expand(-1, -1, size)], dim=-1)  # (B, S, S, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _crop_boxes(x: Tensor, *, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample boxes (top, left, height, width), each (B,) float with integer values."""
    batch, img_h, img_w = x.shape[0], x.shape[-2], x.shape[-1]
    tries = (batch, _CROP_TRIES)
    area = img_h * img_w * _uniform(tries, *scale, generator=generator, like=x)  # (B, T)
    log_ratio = _uniform(tries, math.log(ratio[0]), math.log(ratio[1]), generator=generator, like=x)
    aspect = torch.exp(log_ratio)  # (B, T)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= img_w) & (h > 0) & (h <= img_h)  # (B, T)
    first = fits.int().argmax(dim=1, keepdim=True)  # (B, 1) first fitting try (0 if none)
    found = fits.any(dim=1)  # (B,)
    fallback_h, fallback_w = _center_box(img_h, img_w, ratio)
    h = torch.where(found, h.gather(1, first).squeeze(1), fallback_h)
    w = torch.where(found, w.gather(1, first).squeeze(1), fallback_w)
    u = torch.rand((2, batch), generator=generator, device=x.device, dtype=x.dtype)
    top = torch.where(found, torch.floor(u[0] * (img_h - h + 1)), torch.floor((img_h - h) / 2))
    left = torch.where(found, torch.floor(u[1] * (img_w - w + 1)), torch.floor((img_w - w) / 2))
    return top, left, h, w


def _center_box(img_h: int, img_w: int, ratio: tuple[float, float]) -> tuple[float, float]:
    """torchvision's fallback box: the whole image with its aspect ratio clamped into `ratio`."""
    in_ratio = img_w / img_h
    if in_ratio < ratio[0]:
        return float(round(img_w / ratio[0])), float(img_w)
    if in_ratio > ratio[1]:
        return float(img_h), float(round(img_h * ratio[1]))
    return float(img_h), float(img_w)


def _box_coordinates(start: Tensor, length: Tensor, extent: int, k: Tensor) -> Tensor:
    """(B, S) grid_sample coordinates of S output pixels spread over [start, start + length).

    Source pixel position start + k·length − 0.5 (k = (s + 0.5)/S), clamped to the box's first and
    last pixel as F.interpolate clamps to the cropped image's edge, then mapped to [−1, 1] with
    pixel i's centre at (2i + 1)/extent − 1.
    """
    src = start.unsqueeze(1) + k * length.unsqueeze(1) - 0.5  # (B, S)
    src = torch.minimum(torch.maximum(src, start.unsqueeze(1)), (start + length - 1).unsqueeze(1))
    return (2 * src + 1) / extent - 1


# ---------------------------------------------------------------------------------------------
# Flip, grayscale, solarize, normalize


def horizontal_flip(x: Tensor, *, p: float = 0.5, generator: torch.Generator) -> Tensor:
    """Mirror each sample left-right with probability p (torchvision's RandomHorizontalFlip)."""
    _check_prob("p", p)
    if p == 0.0:
        return x
    flip = _coin(x.shape[0], p, generator=generator, like=x)  # (B,)
    return torch.where(_per_sample(flip), x.flip(-1), x)


def grayscale(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma 0.299 R + 0.587 G + 0.114 B of an RGB batch (PIL's convert("L"))."""
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 1, 3)
    gray = torch.matmul(weights, x.reshape(x.shape[0], 3, -1))  # (B, 1, H·W)
    return gray.view(x.shape[0], 1, *x.shape[2:])


def random_grayscale(x: Tensor, *, p: float = 0.2, generator: torch.Generator) -> Tensor:
    """Replace each RGB sample by its luma on all three channels with probability p.

    torchvision's RandomGrayscale ("Randomly convert image to grayscale with a probability of p");
    a 1-channel batch is returned unchanged.
    """
    _check_prob("p", p)
    if p == 0.0 or x.shape[1] == 1:
        return x
    gray = _coin(x.shape[0], p, generator=generator, like=x)  # (B,)
    return torch.where(_per_sample(gray), grayscale(x).expand_as(x), x)


def solarize(x: Tensor, *, p: float, threshold: float = 128 / 255,
             generator: torch.Generator) -> Tensor:
    """With probability p per sample, invert every value at or above `threshold`: x ≥ t → 1 − x.

    PIL's ImageOps.solarize ("Invert all pixel values above a threshold", inverting values ≥ 128
    on uint8), which solo-learn's Solarization calls; the default 128/255 is that threshold.
    """
    _check_prob("p", p)
    if p == 0.0:
        return x
    apply = _coin(x.shape[0], p, generator=generator, like=x).to(x.dtype)  # (B,)
    invert = _at_least(x, threshold).mul_(_per_sample(apply))  # (B, C, H, W) 1.0 where inverted
    return torch.lerp(x, 1.0 - x, invert)


def normalize(x: Tensor, mean, std) -> Tensor:
    """(x − mean) / std per channel; `mean` and `std` are sequences of C floats."""
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean and std need {x.shape[1]} values (one per channel), "
                         f"got mean={tuple(mean)}, std={tuple(std)}")
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


# ---------------------------------------------------------------------------------------------
# Gaussian blur


def blur_kernel_size(image_size: int) -> int:
    """Odd kernel size ≈ 10% of the image side (SimCLR), at least 3: 32 → 3, 96 → 9, 224 → 23."""
    return max(3, 2 * int(0.1 * image_size / 2) + 1)


def gaussian_blur(x: Tensor, *, p: float = 0.5, sigma: tuple[float, float] = (0.1, 2.0),
                  kernel_size: int | None = None, generator: torch.Generator) -> Tensor:
    """Blur each sample with probability p by a Gaussian of its own σ, uniform in `sigma`.

    SimCLR (Chen et al., 2020, App. A): "we blur the image 50% of the time using a Gaussian
    kernel. We randomly sample σ ∈ [0.1, 2.0], and the kernel size is set to be 10% of the image
    height/width." Separable: two grouped convolutions with one kernel per sample, reflect
    padding (so a constant image stays constant). Samples that are not blurred get the identity
    kernel, which leaves them bit-exact. solo-learn uses PIL's GaussianBlur(radius=σ), whose
    support is not truncated to 10% of the image; on 32×32 images the 3-tap kernel is flatter.
    """
    _check_prob("p", p)
    _check_range("sigma", sigma, low=1e-6)
    if p == 0.0:
        return x
    batch, channels, height, width = x.shape
    size = kernel_size or blur_kernel_size(min(height, width))
    kernel = _gaussian_kernels(x, size=size, p=p, sigma=sigma, generator=generator)  # (B, K)
    weight = kernel.repeat_interleave(channels, dim=0)  # (B·C, K)
    y = x.reshape(1, batch * channels, height, width)  # (1, B·C, H, W)
    r = size // 2
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), weight.view(-1, 1, 1, size),
                 groups=batch * channels)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), weight.view(-1, 1, size, 1),
                 groups=batch * channels)
    return y.view_as(x)


def _gaussian_kernels(x: Tensor, *, size: int, p: float, sigma: tuple[float, float],
                      generator: torch.Generator) -> Tensor:
    """(B, K) normalised 1-D Gaussians, the identity kernel [0, …, 1, …, 0] where not applied."""
    std = _uniform(x.shape[0], *sigma, generator=generator, like=x).unsqueeze(1)  # (B, 1)
    apply = _coin(x.shape[0], p, generator=generator, like=x).unsqueeze(1)  # (B, 1)
    t = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2  # (K,)
    kernel = torch.exp(-t.square() / (2 * std.square()))  # (B, K)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    return torch.where(apply, kernel, (t == 0).to(x.dtype))
