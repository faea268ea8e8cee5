"""Invariants of the batched augmentations and the per-method view recipes."""

import colorsys
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from synccp.data import augment as A
from synccp.data import color as C
from synccp.data.views import ViewRecipe, eval_transform, make_view
from synccp.methods import view_recipes

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int = 0, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device).manual_seed(seed)


def batch(b: int = 8, c: int = 3, size: int = 16, seed: int = 0, device: str = "cpu"):
    return torch.rand(b, c, size, size, generator=gen(seed)).to(device)


OPS = {
    "crop": lambda x, g: A.random_resized_crop(x, size=12, generator=g),
    "flip": lambda x, g: A.horizontal_flip(x, p=0.5, generator=g),
    "jitter": lambda x, g: C.color_jitter(x, brightness=0.4, contrast=0.4, saturation=0.4,
                                          hue=0.1, p=0.8, generator=g),
    "gray": lambda x, g: A.random_grayscale(x, p=0.5, generator=g),
    "blur": lambda x, g: A.gaussian_blur(x, p=0.5, sigma=(0.1, 2.0), generator=g),
    "solarize": lambda x, g: A.solarize(x, p=0.5, threshold=0.5, generator=g),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_ops_keep_dtype_device_range_and_are_seeded(name, channels, device):
    x = batch(c=channels, device=device)
    out = OPS[name](x, gen(1, device))
    size = 12 if name == "crop" else 16
    assert out.shape == (8, channels, size, size)
    assert out.dtype == torch.float32 and out.device == x.device
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert torch.equal(out, OPS[name](x, gen(1, device)))
    if name == "gray" and channels == 1:
        assert torch.equal(out, x)  # grayscale of one channel is a no-op
        return
    outs = [OPS[name](x, gen(s, device)) for s in range(2, 6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_ops_never_touch_the_global_rng():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for op in OPS.values():
        op(batch(), gen(1))
    assert torch.equal(state, torch.get_rng_state())


# --- random resized crop ---------------------------------------------------------------------


def test_crop_is_per_sample():
    x = batch(b=1, size=32).expand(16, -1, -1, -1).contiguous()  # one image, 16 times
    out = A.random_resized_crop(x, size=16, scale=(0.08, 0.5), generator=gen())
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) == 16


@pytest.mark.parametrize("in_size,out_size", [(16, 16), (12, 20), (20, 12)])
def test_full_box_crop_equals_resize_of_whole_image(in_size, out_size):
    x = batch(size=in_size)
    out = A.random_resized_crop(x, size=out_size, scale=(1.0, 1.0), ratio=(1.0, 1.0),
                                generator=gen())
    ref = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref, atol=3e-6, rtol=0)


def test_crop_equals_crop_then_resize():
    x = batch(b=64, size=20)
    top, left, h, w = A._crop_boxes(x, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=gen(3))
    out = A.random_resized_crop(x, size=24, generator=gen(3))
    for i in range(0, 64, 7):
        t, lft, hh, ww = int(top[i]), int(left[i]), int(h[i]), int(w[i])
        ref = F.interpolate(x[i:i + 1, :, t:t + hh, lft:lft + ww], size=24, mode="bilinear",
                            align_corners=False)
        torch.testing.assert_close(out[i:i + 1], ref, atol=1e-5, rtol=0)


def test_crop_boxes_respect_scale_and_ratio():
    x = torch.zeros(2000, 1, 64, 48)
    top, left, h, w = A._crop_boxes(x, scale=(0.2, 0.6), ratio=(0.5, 2.0), generator=gen())
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 64).all() and (left + w <= 48).all()
    area = h * w / (64 * 48)
    assert area.min() > 0.18 and area.max() < 0.63  # rounding of h and w
    aspect = w / h
    assert aspect.min() > 0.45 and aspect.max() < 2.2
    assert len(set(top.tolist())) > 10 and len(set(left.tolist())) > 10


def test_crop_falls_back_to_center_crop_with_clamped_ratio():
    x = torch.zeros(4, 1, 30, 30)  # no box of ratio >= 3 and area >= 90% fits a square
    top, left, h, w = A._crop_boxes(x, scale=(0.9, 1.0), ratio=(3.0, 4.0), generator=gen())
    assert torch.equal(w, torch.full((4,), 30.0)) and torch.equal(h, torch.full((4,), 10.0))
    assert torch.equal(top, torch.full((4,), 10.0)) and torch.equal(left, torch.zeros(4))


# --- flip, grayscale, solarize -----------------------------------------------------------------


def test_flip_probabilities_and_involution():
    x = batch()
    assert torch.equal(A.horizontal_flip(x, p=0.0, generator=gen()), x)
    once = A.horizontal_flip(x, p=1.0, generator=gen())
    assert torch.equal(once, x.flip(-1))
    assert torch.equal(A.horizontal_flip(once, p=1.0, generator=gen()), x)
    some = A.horizontal_flip(batch(b=64), p=0.5, generator=gen())
    flipped = (some == batch(b=64).flip(-1)).flatten(1).all(1)
    assert 10 < int(flipped.sum()) < 54


def test_grayscale_is_luma_and_leaves_one_channel_alone():
    x = batch()
    out = A.random_grayscale(x, p=1.0, generator=gen())
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(out[:, c], luma, atol=1e-6, rtol=0)
    assert torch.equal(A.random_grayscale(x, p=0.0, generator=gen()), x)
    gray = batch(c=1)
    assert torch.equal(A.random_grayscale(gray, p=1.0, generator=gen()), gray)


@pytest.mark.parametrize("threshold", [0.3, 128 / 255])
def test_solarize_matches_formula(threshold):
    x = batch()
    out = A.solarize(x, p=1.0, threshold=threshold, generator=gen())
    assert torch.equal(out, torch.where(x < threshold, x, 1.0 - x))
    assert torch.equal(A.solarize(x, p=0.0, threshold=threshold, generator=gen()), x)


# --- colour jitter ----------------------------------------------------------------------------


def test_brightness_is_scaling_clamped():
    x = batch(b=32) * 0.8 + 0.1  # values in [0.1, 0.9]
    x[:, :, 0, 0] = 0.1  # a pixel that never clamps, to read the factor from
    out = C.color_jitter(x, brightness=0.4, contrast=0, saturation=0, hue=0, p=1.0,
                         generator=gen())
    factor = (out[:, 0, 0, 0] / 0.1).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
    assert factor.min() >= 0.6 - 1e-5 and factor.max() <= 1.4 + 1e-5
    assert len(set(factor.flatten().tolist())) == 32
    torch.testing.assert_close(out, (x * factor).clamp(0, 1), atol=1e-5, rtol=0)


def test_contrast_and_saturation_follow_torchvision_blends():
    x = batch(b=4)
    for kind in ("contrast", "saturation"):
        kwargs = dict(brightness=0, contrast=0, saturation=0, hue=0, p=1.0)
        out = C.color_jitter(x, **dict(kwargs, **{kind: 0.5}), generator=gen(7))
        gray = A.grayscale(x)  # (B, 1, H, W)
        blend_to = gray.mean(dim=(1, 2, 3), keepdim=True) if kind == "contrast" else gray
        # out = clamp(f·x + (1 − f)·target): recover f per sample from unclamped pixels
        f = ((out - blend_to) / (x - blend_to)).flatten(1).median(dim=1).values.view(-1, 1, 1, 1)
        assert f.min() >= 0.5 - 1e-4 and f.max() <= 1.5 + 1e-4
        torch.testing.assert_close(out, (f * x + (1 - f) * blend_to).clamp(0, 1), atol=1e-4,
                                   rtol=0)


def test_jitter_probability_zero_is_identity_and_one_always_applies():
    x = batch(b=32)
    kwargs = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    assert torch.equal(C.color_jitter(x, **kwargs, p=0.0, generator=gen()), x)
    out = C.color_jitter(x, **kwargs, p=1.0, generator=gen())
    assert (out - x).abs().flatten(1).amax(1).min() > 1e-3


def test_jitter_on_one_channel_uses_brightness_and_contrast_only():
    x = batch(c=1)
    out = C.color_jitter(x, brightness=0, contrast=0, saturation=0.8, hue=0.4, p=1.0,
                         generator=gen())
    assert torch.equal(out, x)


def test_jitter_order_is_a_random_permutation_per_sample():
    order = C._jitter_order(960, generator=gen(), device="cpu")  # (B, 4)
    assert torch.equal(order.sort(dim=1).values, torch.arange(4).expand(960, 4))
    seen = {tuple(row) for row in order.tolist()}
    assert seen == set(itertools.permutations(range(4)))
    hue_step = (order == 3).int().argmax(dim=1)
    assert torch.equal(torch.bincount(hue_step), torch.full((4,), 240))


def test_hue_shift_matches_colorsys():
    pixels = torch.rand(300, 3, 1, 1, generator=gen())
    pixels[:30, 1] = pixels[:30, 0]  # ties between channels
    pixels[30:40] = 0.5  # gray: no hue
    shift = torch.rand(300, generator=gen(1)) - 0.5
    out = C.adjust_hue(pixels, shift)[:, :, 0, 0]
    for i in range(300):
        h, s, v = colorsys.rgb_to_hsv(*pixels[i, :, 0, 0].tolist())
        ref = colorsys.hsv_to_rgb((h + shift[i].item()) % 1.0, s, v)
        assert torch.allclose(out[i], torch.tensor(ref), atol=1e-5)


def test_hue_shift_zero_and_twice_half_are_identity():
    x = batch()
    torch.testing.assert_close(C.adjust_hue(x, 0.0), x, atol=1e-5, rtol=0)
    twice = C.adjust_hue(C.adjust_hue(x, 0.5), 0.5)
    torch.testing.assert_close(twice, x, atol=1e-5, rtol=0)


# --- blur -------------------------------------------------------------------------------------


def test_blur_kernel_size_is_about_ten_percent_and_odd():
    assert [A.blur_kernel_size(s) for s in (28, 32, 96, 224)] == [3, 3, 9, 23]


def test_blur_keeps_constants_and_means_and_smooths():
    const = torch.full((4, 3, 32, 32), 0.37)
    torch.testing.assert_close(A.gaussian_blur(const, p=1.0, generator=gen()), const)
    x = batch(size=32)
    out = A.gaussian_blur(x, p=1.0, sigma=(1.0, 2.0), generator=gen())
    torch.testing.assert_close(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=5e-3, rtol=0)
    def tv(t):
        return (t.diff(dim=-1).abs().mean() + t.diff(dim=-2).abs().mean()).item()

    assert tv(out) < 0.8 * tv(x)
    assert torch.equal(A.gaussian_blur(x, p=0.0, generator=gen()), x)


def test_blur_matches_a_per_sample_reference():
    x = batch(b=3, c=2, size=10)
    out = A.gaussian_blur(x, p=1.0, sigma=(0.5, 1.5), kernel_size=5, generator=gen(4))
    sigma = A._uniform(3, 0.5, 1.5, generator=gen(4), like=x)
    for i in range(3):
        t = torch.arange(5.0) - 2
        k = torch.exp(-t ** 2 / (2 * sigma[i] ** 2))
        k2 = torch.outer(k, k) / k.sum() ** 2
        padded = F.pad(x[i:i + 1], (2, 2, 2, 2), mode="reflect")
        ref = F.conv2d(padded, k2.expand(2, 1, 5, 5), groups=2)
        torch.testing.assert_close(out[i:i + 1], ref, atol=1e-5, rtol=0)


# --- views -------------------------------------------------------------------------------------


SOLO_LEARN_CIFAR = {  # (brightness, contrast, saturation, hue, blur, (solarize view 1, view 2))
    "simclr": (0.8, 0.8, 0.8, 0.2, 0.5, (0.0, 0.0)),  # augmentations/symmetric.yaml
    "mocov2": (0.4, 0.4, 0.4, 0.1, 0.5, (0.0, 0.0)),  # augmentations/symmetric_weak.yaml
    "simsiam": (0.4, 0.4, 0.4, 0.1, 0.5, (0.0, 0.0)),  # augmentations/symmetric_weak.yaml
    "byol": (0.4, 0.4, 0.2, 0.1, 0.0, (0.0, 0.2)),  # augmentations/asymmetric.yaml
    "barlow": (0.4, 0.4, 0.2, 0.1, 0.0, (0.0, 0.2)),  # augmentations/asymmetric.yaml
}


@pytest.mark.parametrize("method", sorted(SOLO_LEARN_CIFAR))
def test_recipes_are_solo_learn_cifar_defaults(method):
    b, c, s, h, blur, solarize = SOLO_LEARN_CIFAR[method]
    views = view_recipes(method, image_size=32, channels=3)
    for recipe, sol in zip(views, solarize, strict=True):
        assert recipe == ViewRecipe(crop_size=32, crop_scale=(0.08, 1.0),
                                    crop_ratio=(3 / 4, 4 / 3), jitter_prob=0.8, brightness=b,
                                    contrast=c, saturation=s, hue=h, grayscale_prob=0.2,
                                    blur_prob=blur, blur_sigma=(0.1, 2.0), solarize_prob=sol,
                                    solarize_threshold=128 / 255, flip_prob=0.5)
    gray = view_recipes(method, image_size=28, channels=1)
    assert all(r.saturation == r.hue == r.grayscale_prob == 0.0 for r in gray)
    assert all(r.brightness == b and r.contrast == c and r.crop_size == 28 for r in gray)


def test_view_recipes_reject_unknown_input():
    with pytest.raises(ValueError, match="method.name.*'moco'"):
        view_recipes("moco", image_size=32, channels=3)
    with pytest.raises(ValueError, match="channels"):
        view_recipes("byol", image_size=32, channels=2)


@pytest.mark.parametrize("device", DEVICES)
def test_make_view_shapes_range_and_seeding(device):
    images = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8,
                           generator=gen()).to(device)
    first, second = view_recipes("simclr", image_size=12, channels=3)
    view = make_view(images, second, mean=(0, 0, 0), std=(1, 1, 1), generator=gen(0, device))
    assert view.shape == (16, 3, 12, 12) and view.dtype == torch.float32
    assert view.device == images.device and 0.0 <= view.min() and view.max() <= 1.0
    again = make_view(images, second, mean=(0, 0, 0), std=(1, 1, 1), generator=gen(0, device))
    assert torch.equal(view, again)
    other = make_view(images, second, mean=(0, 0, 0), std=(1, 1, 1), generator=gen(1, device))
    assert not torch.equal(view, other)
    normed = make_view(images, second, mean=(0.5,) * 3, std=(0.25,) * 3, generator=gen(0, device))
    torch.testing.assert_close(normed, (view - 0.5) / 0.25)


def test_make_view_rejects_float_images():
    recipe = view_recipes("byol", image_size=8, channels=1)[0]
    with pytest.raises(ValueError, match="uint8"):
        make_view(torch.rand(2, 1, 8, 8), recipe, mean=(0.5,), std=(0.5,), generator=gen())


def test_eval_transform_is_deterministic_normalization():
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=gen())
    out = eval_transform(images, image_size=28, mean=(0.3,), std=(0.2,))
    torch.testing.assert_close(out, (images.float() / 255 - 0.3) / 0.2)
    wide = torch.randint(0, 256, (2, 3, 20, 30), dtype=torch.uint8, generator=gen())
    resized = eval_transform(wide, image_size=10, mean=(0,) * 3, std=(1,) * 3)
    ref = F.interpolate(wide.float() / 255, size=(10, 15), mode="bilinear", align_corners=False,
                        antialias=True)[..., 2:12]
    torch.testing.assert_close(resized, ref)
    assert math.isclose(float(resized.max()), float(ref.max()))
