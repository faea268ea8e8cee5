"""Streaming loader throughput and memory: decode (+ on-device augmentation) images/s, RSS.

Writes a folder of real JPEG photo-sized files (`--photo` W×H, default 500×375, about ImageNet's
mean; smooth random colour fields plus noise, quality 90), then streams it through
`synccp.data.loader.StreamBatches` exactly as training does (uint8 batches of `--image-size`,
pinned and moved to `--device`) with each `--workers` count. Reported per count: the median over
`--repeats` windows of `--batches` batches of (a) decode → device images/s and (b) the same plus
both BYOL views of `synccp.data.views.make_view` on the device; the first batches (worker start)
are excluded. `--draft-ab` also times Pillow without its DCT-domain JPEG downscaling.

`--memory N1 N2 ...`: resident memory (VmRSS of this process and of its DataLoader workers, from
/proc) after streaming `--memory-batches` batches of folders of N small JPEGs each: it must not
grow with N (only the file index does, ~50 bytes per image).

    .venv/bin/python benchmarks/bench_loader.py --workers 1 2 --memory 1000 20000
    python3 benchmarks/bench_loader.py --device cuda --workers 1 4 8 14 --batch 256 --images 3000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from synccp.data.loader import StreamBatches
from synccp.data.stream import load_stream
from synccp.data.views import make_view
from synccp.methods import view_recipes


def write_jpegs(
    root: Path, count: int, size: tuple[int, int], *, classes: int = 10, seed: int = 0
) -> None:
    """`count` JPEGs of `size` (W, H) in root/train/c<k>/ (existing files kept), written by a
    process pool: a random 8×6 colour field upscaled bicubically, plus a shifted noise texture."""
    todo = [i for i in range(count) if not _jpeg_path(root, i, classes).exists()]
    chunks = [todo[k :: os.cpu_count() or 1] for k in range(os.cpu_count() or 1)]
    with ProcessPoolExecutor(max_workers=len(chunks)) as pool:
        list(pool.map(_write_chunk, [(root, c, size, classes, seed) for c in chunks if c]))


def _jpeg_path(root: Path, i: int, classes: int) -> Path:
    return root / "train" / f"c{i % classes}" / f"{i:07d}.JPEG"


def _write_chunk(job) -> None:
    root, indices, (w, h), classes, seed = job
    noise = np.random.default_rng(seed).integers(-24, 24, (h + 64, w + 64, 3), dtype=np.int16)
    for i in indices:
        rng = np.random.default_rng((seed, i))
        field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
            (w, h), Image.BICUBIC
        )
        dy, dx = rng.integers(0, 64, 2)
        pixels = np.clip(
            np.asarray(field, dtype=np.int16) + noise[dy : dy + h, dx : dx + w], 0, 255
        )
        path = _jpeg_path(root, i, classes)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stream(data, device, args, workers: int) -> StreamBatches:
    steps = max(len(data) // args.batch, 1)
    return StreamBatches(
        data,
        device=device,
        seed=0,
        batch_size=args.batch,
        take=args.batch,
        offset=0,
        steps_per_epoch=steps,
        workers=workers,
        prefetch=args.prefetch,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(data, device, args, workers: int, *, augment: bool) -> float:
    """Median images/s over the timed windows (the first `--warmup` batches excluded)."""
    batches = stream(data, device, args, workers)
    recipes = view_recipes("byol", image_size=data.image_size, channels=3)
    generator = torch.Generator(device).manual_seed(0)
    step, rates = 0, []
    for window in range(args.repeats + 1):
        sync(device)
        start = time.perf_counter()
        count = args.warmup if window == 0 else args.batches
        for _ in range(count):
            images = batches.batch(step)
            step += 1
            if augment:
                for recipe in recipes:
                    make_view(images, recipe, mean=data.mean, std=data.std, generator=generator)
        sync(device)
        if window:
            rates.append(count * args.batch / (time.perf_counter() - start))
    batches.close()
    return statistics.median(rates)


def memory(args, device, base: Path) -> list[dict]:
    rows = []
    for count in args.memory:
        root = base / f"small{count}"
        write_jpegs(root, count, (64, 48), classes=100, seed=count)
        data = load_stream("image_folder", "train", root=str(root), image_size=args.image_size)
        batches = stream(data, device, args, 2)
        for step in range(args.memory_batches):
            batches.batch(step)
        workers = children(os.getpid())
        rows.append(
            {
                "images": count,
                "main_rss_mb": rss_mb(os.getpid()),
                "workers_rss_mb": [round(rss_mb(p), 1) for p in workers],
            }
        )
        batches.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder to write/reuse (default: a temp dir)"
    )
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--photo", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--draft-ab", action="store_true", help="also time Pillow without JPEG draft mode"
    )
    parser.add_argument("--memory", type=int, nargs="*", default=[])
    parser.add_argument("--memory-batches", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    base = args.dir or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    os.environ.setdefault("SYNCCP_CACHE", str(base / "cache"))
    start = time.perf_counter()
    write_jpegs(base / "photos", args.images, tuple(args.photo))
    print(
        f"wrote {args.images} JPEGs {args.photo[0]}x{args.photo[1]} in "
        f"{time.perf_counter() - start:.1f} s"
    )
    data = load_stream(
        "image_folder", "train", root=str(base / "photos"), image_size=args.image_size
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, "
        f"device {device}; {args.image_size}px batches of {args.batch}, prefetch {args.prefetch}"
    )
    result = {"device": str(device), "throughput": []}
    variants = [("draft", True)] + ([("no draft", False)] if args.draft_ab else [])
    for label, draft in variants:
        variant = replace(data, draft=draft)
        for workers in args.workers:
            row = {
                "decoder": f"Pillow {Image.__version__} {label}",
                "workers": workers,
                "decode_img_s": throughput(variant, device, args, workers, augment=False),
                "decode_augment_img_s": throughput(variant, device, args, workers, augment=True),
            }
            result["throughput"].append(row)
            print(
                f"{row['decoder']:22s} workers {workers:2d}: decode→{device.type} "
                f"{row['decode_img_s']:8.0f} img/s, "
                f"+ two BYOL views {row['decode_augment_img_s']:8.0f} img/s"
            )
    if args.memory:
        result["memory"] = memory(args, device, base)
        for row in result["memory"]:
            print(
                f"{row['images']:6d} images: main RSS {row['main_rss_mb']:.0f} MB, workers RSS "
                f"{row['workers_rss_mb']} MB after {args.memory_batches} batches"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
