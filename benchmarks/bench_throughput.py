"""Pretraining throughput: images/s of a full training step (BYOL by default), and MFU on a GPU.

A step is exactly the trainer's (`synccp.train.step.train_step`: views, forward, backward, masked
gradients, optimizer step, Sparsifier update, EMA target update + re-mask): two augmented views,
online forward/backward on both views, target forward on both, LARS step, EMA. Data: synthetic
uint8 images (seeded), 32×32 RGB by default. Dense and SyncCP (90% unstructured, masks of a
finished ramp, no update inside the timed window), at each `--precision`, run interleaved;
warm-up excluded; medians of several timed windows.
`--method simclr` times the shared-encoder path (view A through θ⊙M_A, view B through θ⊙M_B).

MFU = model FLOPs per step (counted once with `torch.utils.flop_counter.FlopCounterMode`,
forward + backward, augmentations and optimizer excluded) / step time / peak. The peak defaults
to 790 TFLOP/s, the bf16 dense matmul rate measured on an H100 here (DESIGN.md §5).

    .venv/bin/python benchmarks/bench_throughput.py                       # CPU, small
    .venv/bin/python benchmarks/bench_throughput.py --precision fp32 bf16 # CPU: bf16 autocast
    .venv/bin/python benchmarks/bench_throughput.py --method simclr --width 16 --size 28 \
        --channels 1 --batch 256
    .venv/bin/python benchmarks/bench_throughput.py --device cuda --width 64 --batch 512
    .venv/bin/python benchmarks/bench_throughput.py --method mocov2 --width 8 --size 28 \
        --channels 1 --batch 256 --precision fp32 --profile 12   # where a step's time goes
    .venv/bin/python benchmarks/bench_throughput.py --device cuda --backbone resnet50 \
        --stem imagenet --width 64 --size 224 --batch 128
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from synccp.config import load_config
from synccp.data.datasets import ImageDataset
from synccp.train.setup import TrainingSetup, build_setup
from synccp.train.step import train_step


def make_setup(algorithm: str, precision: str, args, device: torch.device) -> TrainingSetup:
    cfg = load_config(None, [f"sparsity.algorithm={algorithm}", f"model.width={args.width}",
                             f'method.name="{args.method}"', f'model.backbone="{args.backbone}"',
                             f'model.stem="{args.stem}"',
                             f"train.batch_size={args.batch}", "train.epochs=100",
                             f"train.precision={precision}",
                             "sparsity.start_epoch=0", "sparsity.end_epoch=50"])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch * 4, args.channels, args.size, args.size),
                           dtype=torch.uint8, generator=g)
    data = ImageDataset(images=images, labels=torch.zeros(len(images), dtype=torch.int64),
                        num_classes=10, mean=(0.5,) * args.channels, std=(0.25,) * args.channels,
                        name="synthetic")
    setup = build_setup(cfg, device, data=data)  # 4 steps per epoch × 100 epochs = 400 steps
    every = cfg.sparsity.update_every
    for step in range(every, 201, every):  # walk the whole ramp (ends at step 200): 90% sparse
        setup.sparsifier.update_(step, setup.optimizer)
    return cfg, setup


def full_step(cfg, setup: TrainingSetup, step: int) -> None:
    """The trainer's step (`synccp.train.step.train_step`: loop._run_steps without logging)."""
    train_step(setup, step)


def step_flops(cfg, setup: TrainingSetup) -> float:
    with FlopCounterMode(display=False) as counter:
        train_step(setup, 1)
    return float(counter.get_total_flops())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="byol",
                        choices=["byol", "simclr", "mocov2", "barlow", "simsiam"])
    parser.add_argument("--backbone", default="resnet18",
                        choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--stem", default="cifar", choices=["cifar", "imagenet"])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=790.0)
    parser.add_argument("--precision", nargs="+", default=["auto"],
                        choices=["auto", "fp32", "bf16"],
                        help="train.precision values to compare (e.g. fp32 bf16 on a CPU)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after timing, profile one dense step (torch.profiler) and print "
                             "its ROWS most expensive operators by self time")
    args = parser.parse_args()
    device = torch.device(args.device)
    setups = {f"{name} {precision}": make_setup(name, precision, args, device)
              for precision in args.precision for name in ("dense", "synccp")}
    first = next(iter(setups))
    flops = step_flops(*setups[first])
    times: dict[str, list[float]] = {name: [] for name in setups}
    for cfg, setup in setups.values():  # warm-up
        for step in range(2):
            full_step(cfg, setup, step)
    sync(device)
    for rep in range(args.repeats):
        for name, (cfg, setup) in setups.items():
            start = time.perf_counter()
            for step in range(args.steps):
                full_step(cfg, setup, 300 + rep * args.steps + step)  # after the ramp: no updates
            sync(device)
            times[name].append((time.perf_counter() - start) / args.steps)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"device {device}, threads {torch.get_num_threads()}")
    print(f"{args.method} {args.backbone} ({args.stem} stem) width {args.width}, "
          f"{args.size}x{args.size}x{args.channels}, batch {args.batch}; "
          f"model FLOPs/step {flops / 1e9:.2f} GFLOP")
    base = statistics.median(times[first])
    for name, values in times.items():
        step = statistics.median(values)
        line = (f"{name:14s} step {1e3 * step:8.1f} ms  {args.batch / step:9.0f} img/s  "
                f"{50_000 / args.batch * step:7.1f} s per 50k-image epoch  "
                f"×{step / base:.3f} vs {first}")
        if device.type == "cuda":
            line += f"  MFU {100 * flops / step / (args.peak_tflops * 1e12):.1f}%"
        print(line)
    if args.profile:
        print_profile(*setups[first], rows=args.profile)


def print_profile(cfg, setup: TrainingSetup, *, rows: int) -> None:
    """The operators of one full step, most expensive first (self time: where it is spent)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                           if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        full_step(cfg, setup, 400)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


if __name__ == "__main__":
    main()
