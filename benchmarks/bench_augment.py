"""Two-view augmentation throughput: synccp's batched pipeline vs kornia vs a per-sample loop.

All three run the BYOL recipe (solo-learn CIFAR defaults: crop scale (0.08, 1), flip 0.5, colour
jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale 0.2, no blur, solarize 0 / 0.2, normalize) on
synthetic uint8 batches, from uint8 on the device to normalized float views:

1. `synccp`  — `synccp.data.views.make_view` on the whole batch, once per view;
2. `kornia`  — `kornia.augmentation.AugmentationSequential` with the equivalent ops;
3. `loop`    — `make_view` on one image at a time, as a per-sample DataLoader transform would.

Pipelines run interleaved (round-robin, rotating which goes first) so that load from other
processes hits all of them alike; warm-up calls are excluded; the table reports the median
over repeats. Usage (docs/augment.md has the numbers):

    .venv/bin/python benchmarks/bench_augment.py --threads 2
    .venv/bin/python benchmarks/bench_augment.py --device cuda --batch 512
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from synccp.data import augment as A
from synccp.data import color as C
from synccp.data.views import make_view
from synccp.methods import view_recipes

MEAN = {1: (0.2860,), 3: (0.4914, 0.4822, 0.4465)}
STD = {1: (0.3530,), 3: (0.2470, 0.2435, 0.2616)}
CASES = (("32x32 RGB (CIFAR-like)", 3, 32), ("28x28 gray (Fashion-MNIST-like)", 1, 28))


def synccp_pipeline(channels: int, size: int, device: torch.device) -> Callable:
    recipes = view_recipes("byol", image_size=size, channels=channels)
    generator = torch.Generator(device).manual_seed(0)

    def run(images: torch.Tensor):
        return tuple(make_view(images, r, mean=MEAN[channels], std=STD[channels],
                               generator=generator) for r in recipes)
    return run


def loop_pipeline(channels: int, size: int, device: torch.device) -> Callable:
    batched = synccp_pipeline(channels, size, device)

    def run(images: torch.Tensor):
        views = [batched(images[i:i + 1]) for i in range(images.shape[0])]
        return tuple(torch.cat(v) for v in zip(*views, strict=True))
    return run


def kornia_pipeline(channels: int, size: int, device: torch.device, cropping_mode: str) -> Callable:
    import kornia.augmentation as K

    views = []
    for recipe in view_recipes("byol", image_size=size, channels=channels):
        ops = [K.RandomResizedCrop((size, size), scale=recipe.crop_scale, ratio=recipe.crop_ratio,
                                   align_corners=False, cropping_mode=cropping_mode),
               K.RandomHorizontalFlip(p=recipe.flip_prob),
               K.ColorJitter(recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue,
                             p=recipe.jitter_prob)]
        if recipe.grayscale_prob:
            ops.append(K.RandomGrayscale(p=recipe.grayscale_prob))
        if recipe.solarize_prob:
            ops.append(K.RandomSolarize(thresholds=0.0, additions=0.0, p=recipe.solarize_prob))
        ops.append(K.Normalize(mean=torch.tensor(MEAN[channels]), std=torch.tensor(STD[channels])))
        views.append(K.AugmentationSequential(*ops).to(device))

    def run(images: torch.Tensor):
        x = images.float() / 255.0  # (B, C, H, W)
        return tuple(v(x) for v in views)
    return run


def measure(pipelines: dict[str, tuple[Callable, torch.Tensor]], *, repeats: int, warmup: int,
            device: torch.device) -> dict[str, list[float]]:
    """Seconds per call of each pipeline on its batch, interleaved round-robin."""
    def timed(fn: Callable, images: torch.Tensor) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for fn, images in pipelines.values():
        for _ in range(warmup):
            timed(fn, images)
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    names = list(pipelines)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(timed(*pipelines[name]))
    return times


def run_case(label: str, channels: int, size: int, args, device: torch.device) -> None:
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (args.batch, channels, size, size), dtype=torch.uint8,
                          generator=generator).to(device)
    pipelines = {"synccp (batched)": (synccp_pipeline(channels, size, device), batch)}
    for mode in args.kornia_modes:
        pipelines[f"kornia ({mode})"] = (kornia_pipeline(channels, size, device, mode), batch)
    if args.loop_images:
        pipelines["per-sample loop"] = (loop_pipeline(channels, size, device),
                                        batch[:args.loop_images])
    times = measure(pipelines, repeats=args.repeats, warmup=args.warmup, device=device)
    rates = {n: pipelines[n][1].shape[0] / statistics.median(t) for n, t in times.items()}
    ours = rates["synccp (batched)"]
    print(f"\n{label}: batch {args.batch}, two views, {args.repeats} repeats "
          f"(loop on {args.loop_images} images)")
    print(f"| pipeline | median ms / batch of {args.batch} | min ms | images/s | synccp speedup |")
    print("|---|---:|---:|---:|---:|")
    for name, t in times.items():
        scale = args.batch / pipelines[name][1].shape[0]
        print(f"| {name} | {statistics.median(t) * scale * 1e3:.1f} | {min(t) * scale * 1e3:.1f} "
              f"| {rates[name]:,.0f} | {ours / rates[name]:.2f}x |")


# --- ablations: the alternatives measured while choosing the implementation -------------------


def _crop_separable_matmul(x: torch.Tensor, size: int, generator: torch.Generator):
    """Random resized crop as two batched matmuls with per-sample bilinear weight matrices."""
    top, left, h, w = A._crop_boxes(x, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), generator=generator)

    def weights(start, length, extent):  # (B, S, extent) triangle weights at clamped positions
        k = (torch.arange(size, device=x.device) + 0.5) / size
        src = (start[:, None] + k * length[:, None] - 0.5).clamp(min=start[:, None],
                                                                  max=(start + length - 1)[:, None])
        pixel = torch.arange(extent, device=x.device)
        return (1 - (pixel - src[..., None]).abs()).clamp(min=0)

    rows, cols = weights(top, h, x.shape[-2]), weights(left, w, x.shape[-1])
    b, c, height, width = x.shape
    y = torch.bmm(x.reshape(b, c * height, width), cols.transpose(1, 2))  # (B, C·H, S)
    y = torch.bmm(rows, y.view(b, c, height, size).transpose(1, 2).reshape(b, height, -1))
    return y.view(b, size, c, size).transpose(1, 2)


def _hue_bool_where(x: torch.Tensor, shift: torch.Tensor):
    """adjust_hue written with torch.where on bool masks and torch.remainder."""
    r, g, b = x.unbind(1)
    high, low = x.amax(1), x.amin(1)
    chroma = high - low
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    rc, gc, bc = (high - r) / safe, (high - g) / safe, (high - b) / safe
    hue = torch.where(high == r, bc - gc, torch.where(high == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.remainder(hue / 6.0 + shift.view(-1, 1, 1), 1.0)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + 6 * hue[:, None], 6.0)
    return high[:, None] - chroma[:, None] * torch.minimum(k, 4 - k).clamp(0, 1)


def _solarize_bool_where(x: torch.Tensor, generator: torch.Generator):
    apply = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.2
    return torch.where(apply.view(-1, 1, 1, 1) & (x >= 128 / 255), 1.0 - x, x)


def _jitter_fixed_order(x: torch.Tensor, generator: torch.Generator):
    """BYOL colour jitter in the fixed order brightness, contrast, saturation, hue."""
    def u(lo, hi):
        return A._uniform(x.shape[0], lo, hi, generator=generator, like=x).view(-1, 1, 1, 1)

    fb, fc, fs, shift = u(0.6, 1.4), u(0.6, 1.4), u(0.8, 1.2), u(-0.1, 0.1)
    apply = A._coin(x.shape[0], 0.8, generator=generator, like=x).view(-1, 1, 1, 1)
    y = (x * fb).clamp_(0, 1)
    y = (y * fc).add_((1 - fc) * A.grayscale(y).mean(dim=(1, 2, 3), keepdim=True)).clamp_(0, 1)
    y = (y * fs).add_(A.grayscale(y) * (1 - fs)).clamp_(0, 1)
    return torch.where(apply, C.adjust_hue(y, shift.view(-1)), x)


def _blur_shifted_sums(x: torch.Tensor, generator: torch.Generator):
    """Separable per-sample blur as K shifted multiply-adds per direction."""
    b, c, height, width = x.shape
    size = A.blur_kernel_size(min(height, width))
    r = size // 2
    k = A._gaussian_kernels(x, size=size, p=0.5, sigma=(0.1, 2.0), generator=generator)
    k = k.view(b, 1, 1, 1, size)
    xp = F.pad(x, (r, r, 0, 0), mode="reflect")
    y = sum(xp[..., t:t + width] * k[..., t] for t in range(size))
    yp = F.pad(y, (0, 0, r, r), mode="reflect")
    return sum(yp[..., t:t + height, :] * k[..., t] for t in range(size))


def run_ablations(args, device: torch.device) -> None:
    """Each chosen op against the alternative it beat, one 32×32 RGB batch, interleaved."""
    g = torch.Generator(device).manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, generator=g, device=device)
    shift = torch.rand(args.batch, generator=g, device=device) * 0.2 - 0.1
    jitter = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8, generator=g)
    pairs = {
        "crop": (lambda t: A.random_resized_crop(t, size=32, generator=g),
                 lambda t: _crop_separable_matmul(t, 32, g), "grid_sample", "separable matmul"),
        "hue": (lambda t: C.adjust_hue(t, shift), lambda t: _hue_bool_where(t, shift),
                "float masks", "bool where + remainder"),
        "solarize": (lambda t: A.solarize(t, p=0.2, generator=g),
                     lambda t: _solarize_bool_where(t, g), "float mask + lerp", "bool where"),
        "jitter": (lambda t: C.color_jitter(t, **jitter), lambda t: _jitter_fixed_order(t, g),
                   "per-sample order", "fixed order"),
        "blur": (lambda t: A.gaussian_blur(t, p=0.5, generator=g),
                 lambda t: _blur_shifted_sums(t, g), "grouped conv", "shifted sums"),
    }
    print(f"\nablations: batch {args.batch} of 32x32 RGB float, {args.repeats} repeats")
    print("| op | chosen | median ms | alternative | median ms | alternative / chosen |")
    print("|---|---|---:|---|---:|---:|")
    for op, (chosen, other, chosen_name, other_name) in pairs.items():
        times = measure({"chosen": (chosen, x), "other": (other, x)}, repeats=args.repeats,
                        warmup=args.warmup, device=device)
        a, b = statistics.median(times["chosen"]), statistics.median(times["other"])
        print(f"| {op} | {chosen_name} | {a * 1e3:.2f} | {other_name} | {b * 1e3:.2f} "
              f"| {b / a:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--loop-images", type=int, default=64,
                        help="images the per-sample loop processes per repeat (0 = skip)")
    parser.add_argument("--kornia-modes", nargs="*", default=["resample", "slice"],
                        help="kornia RandomResizedCrop cropping_mode values to run")
    parser.add_argument("--ablations", action="store_true",
                        help="also time each chosen op against the alternative it replaced")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    import kornia
    print(f"torch {torch.__version__}, kornia {kornia.__version__}, device {device}, "
          f"threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()}")
    if device.type == "cuda":
        print(torch.cuda.get_device_name(device))
    for label, channels, size in CASES:
        run_case(label, channels, size, args, device)
    if args.ablations:
        run_ablations(args, device)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
