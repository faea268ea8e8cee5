"""Color jitter and hue rotation, batched and per sample (the conventions of `augment`).

Values in [0, 1], per-sample parameters from the keyword `generator`, a fixed number of
whole-batch kernels per call, torchvision's semantics with the differences stated below.
"""

from __future__ import annotations

import torch
from torch import Tensor

from synccp.data.augment import _check_prob, _coin, _per_sample, _uniform, grayscale

_HSV_OFFSETS = (5.0, 3.0, 1.0)  # k-offsets of R, G, B in the closed-form HSV -> RGB conversion


def color_jitter(x: Tensor, *, brightness: float, contrast: float, saturation: float, hue: float,
                 p: float = 0.8, generator: torch.Generator) -> Tensor:
    """With probability p per sample, jitter brightness, contrast, saturation and hue.

    torchvision's ColorJitter inside RandomApply (solo-learn's pipeline): factors uniform in
    [max(0, 1 − v), 1 + v] for brightness, contrast and saturation, a hue shift uniform in
    [−hue, hue] (fraction of the hue circle), the four adjustments "applied in random order" —
    here a random order *per sample*, each adjustment clamping to [0, 1] as torchvision does.
    Each of the four steps runs one fused expression that does brightness, contrast or
    saturation, whichever each sample has at that step; hue goes through HSV. To run hue once
    per sample instead of at every step, samples are put in random order and split into four
    equal blocks, block k taking hue at step k: each sample's order is uniform over all 24, but
    the count per hue step is balanced, not multinomial. Measured as fast as a fixed order
    (docs/augment.md). A 1-channel batch gets brightness and contrast only.
    """
    _check_jitter(brightness, contrast, saturation, hue, p)
    if p == 0.0:
        return x
    batch, channels = x.shape[:2]
    rgb = channels == 3
    perm = torch.randperm(batch, generator=generator, device=x.device) if rgb and hue else None
    xs = x if perm is None else x.index_select(0, perm)  # (B, C, H, W), hue-block order
    factors = torch.stack([_uniform(batch, max(0.0, 1 - v), 1 + v, generator=generator, like=x)
                           for v in (brightness, contrast, saturation if rgb else 0.0)], dim=1)
    shift = None if perm is None else _uniform(batch, -hue, hue, generator=generator, like=x)
    ops = _jitter_order(batch, generator=generator, device=x.device)  # (B, 4)
    apply = _coin(batch, p, generator=generator, like=x)  # (B,)
    y = xs
    for step in range(4):
        y = _blend_step(y, ops[:, step], factors)  # (B, C, H, W)
        lo, hi = (step * batch + 3) // 4, ((step + 1) * batch + 3) // 4
        if shift is not None and hi > lo:
            y[lo:hi] = adjust_hue(y[lo:hi], shift[lo:hi])
    y = torch.where(_per_sample(apply), y, xs)
    return y if perm is None else y.index_select(0, torch.argsort(perm))


def _check_jitter(brightness: float, contrast: float, saturation: float, hue: float,
                  p: float) -> None:
    for name, value in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    _check_prob("p", p)


def _jitter_order(batch: int, *, generator: torch.Generator, device) -> Tensor:
    """(B, 4) operation per step: 0 brightness, 1 contrast, 2 saturation, 3 hue.

    Hue sits at step 4r // B for the r-th sample (the block split of `color_jitter`); the other
    three fill the remaining steps in a uniformly random order per sample.
    """
    others = torch.rand((batch, 3), generator=generator, device=device).argsort(dim=1)  # (B, 3)
    hue_step = (torch.arange(batch, device=device) * 4 // batch).unsqueeze(1)  # (B, 1)
    step = torch.arange(4, device=device)  # (4,)
    slot = (step - (step > hue_step).long()).clamp(max=2)  # (B, 4) index into `others`
    return torch.where(step == hue_step, 3, others.gather(1, slot))


def _blend_step(x: Tensor, op: Tensor, factors: Tensor) -> Tensor:
    """One jitter step, per sample: brightness, contrast or saturation by `op`; 3 = identity.

    torchvision's three adjustments are blends clamped to [0, 1]: brightness f·x, contrast
    f·x + (1 − f)·mean(luma), saturation f·x + (1 − f)·luma. All are
    clamp(scale·x + to_luma·luma + to_mean·mean(luma)) with per-sample weights, so one fused
    expression does whichever each sample needs.
    """
    b, c, s = factors.unbind(1)  # (B,) each
    one, zero = torch.ones_like(b), torch.zeros_like(b)
    scale = torch.where(op == 0, b, torch.where(op == 1, c, torch.where(op == 2, s, one)))
    to_luma = torch.where(op == 2, 1 - s, zero)  # (B,) weight of the pixel's luma
    to_mean = torch.where(op == 1, 1 - c, zero)  # (B,) weight of the image's mean luma
    luma = grayscale(x) if x.shape[1] == 3 else x  # (B, 1, H, W)
    bias = to_mean * luma.mean(dim=(1, 2, 3))  # (B,)
    base = torch.addcmul(_per_sample(bias), luma, _per_sample(to_luma))  # (B, 1, H, W)
    return (x * _per_sample(scale)).add_(base).clamp_(0.0, 1.0)  # (B, C, H, W)


def adjust_hue(x: Tensor, shift: Tensor | float) -> Tensor:
    """Rotate the hue of each RGB sample by `shift` (fraction of the circle; (B,) or a float).

    RGB → HSV hue as colorsys.rgb_to_hsv, then back with the closed form
    f(n) = V − V·S·clamp(min(k, 4 − k), 0, 1), k = (n + 6H) mod 6, n = 5, 3, 1 for R, G, B;
    V and V·S (max and max − min) do not change, so only H is computed. Branches are float-mask
    blends (see `augment._at_least`).
    """
    shift = torch.as_tensor(shift, device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
    high = x.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    chroma = high - x.amin(dim=1, keepdim=True)  # (B, 1, H, W)
    r, g, b = x.split(1, dim=1)  # (B, 1, H, W) each
    is_r = 1.0 - torch.sign(high - r)  # 1.0 where red is the maximum
    is_g = (1.0 - torch.sign(high - g)).mul_(1.0 - is_r)  # 1.0 where green is, red is not
    # colorsys: max r → (g − b)/C, max g → 2 + (b − r)/C, max b → 4 + (r − g)/C; here times C
    sector = torch.lerp(torch.lerp(4.0 * chroma + r - g, 2.0 * chroma + b - r, is_g), g - b, is_r)
    hue6 = sector.div_(chroma.clamp(min=1e-12)).add_(6.0 * shift)  # (B, 1, H, W) 6·hue
    offsets = torch.tensor(_HSV_OFFSETS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = hue6 + offsets  # (B, 3, H, W)
    k = k.sub_(torch.floor(k / 6.0).mul_(6.0))  # mod 6
    ramp = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)  # clamp(min(k, 4 − k), 0, 1)
    return ramp.mul_(chroma.neg()).add_(high)  # V − V·S·ramp, (B, 3, H, W)
