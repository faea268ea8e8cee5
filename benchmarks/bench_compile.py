"""torch.compile of the backbone on CPU: does it train the same and faster? Eager and compiled
setups built from the same seed are stepped alternately (the same machine load on both), and
the losses of every step are compared.

The form that works, and what `train.compile = true` does (`synccp.train.setup.compile_backbone`):
the *backbone module* (the ResNet) compiled in place, the loss, the method's heads and the
optimizer left eager. Both forwards of a step (two views) run through the compiled graphs;
BatchNorm's running statistics update in place as in eager mode. The compiled setup here is built
with that key, so this measures the trainer's path.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_compile.py --method simclr --width 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from synccp.config import load_config
from synccp.data.datasets import ImageDataset
from synccp.study import machine_name
from synccp.train.setup import build_setup
from synccp.train.step import train_step


def make(args, compiled: bool):
    cfg = load_config(None, [f'sparsity.algorithm="{args.algorithm}"', f"model.width={args.width}",
                             f'method.name="{args.method}"', f"train.batch_size={args.batch}",
                             "train.epochs=100", "data.subset=0", "sparsity.start_epoch=0",
                             "sparsity.end_epoch=50", f"train.compile={str(compiled).lower()}"])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.batch * 4, 1, 28, 28), dtype=torch.uint8, generator=g)
    data = ImageDataset(images=images, labels=torch.zeros(len(images), dtype=torch.int64),
                        num_classes=10, mean=(0.5,), std=(0.25,), name="synthetic")
    torch.manual_seed(0)
    setup = build_setup(cfg, torch.device("cpu"), data=data)  # 4 steps per epoch: ramp ends at 200
    setup.sparsifier.prepare_()
    for step in range(cfg.sparsity.update_every, 201, cfg.sparsity.update_every):
        setup.sparsifier.update_(step, setup.optimizer)  # the masks of a finished ramp (90% sparse)
    return cfg, setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--algorithm", default="dense")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12, help="timed steps of each, after warm-up")
    args = parser.parse_args()
    try:  # below width 8 the setup refuses train.compile on the CPU (oneDNN#6035)
        runs = {name: make(args, name == "compiled") for name in ("eager", "compiled")}
    except ValueError as err:
        parser.error(str(err))
    times: dict[str, list[float]] = {name: [] for name in runs}
    losses: dict[str, list[float]] = {name: [] for name in runs}
    first = {}
    for step in range(args.steps + 2):
        for name, (_cfg, setup) in runs.items():
            started = time.perf_counter()
            losses[name].append(float(train_step(setup, 300 + step)[0]))  # after the ramp
            elapsed = time.perf_counter() - started
            if step < 2:  # warm-up; the first compiled step compiles
                first.setdefault(name, elapsed)
            else:
                times[name].append(elapsed)
    print(f"{machine_name()} | torch {torch.__version__}"
          f" | {torch.get_num_threads()} thread(s) | {args.method} {args.algorithm} "
          f"width {args.width} batch {args.batch}, 28x28 gray")
    for name in runs:
        median = statistics.median(times[name])
        print(f"{name:9s} first step {first[name]:7.1f} s   median step {median:.3f} s")
    ratio = statistics.median(times["eager"]) / statistics.median(times["compiled"])
    print(f"compiled speedup (median eager / median compiled): {ratio:.2f}x")
    pairs = zip(losses["eager"], losses["compiled"], strict=True)
    worst = max(abs(a - b) / abs(a) for a, b in pairs)
    print(f"largest relative loss difference over {len(losses['eager'])} steps: {worst:.2e}")
    for name, (_, setup) in runs.items():
        masks = setup.sparsifier.masks()
        weights = {k.removeprefix("_orig_mod."): p.detach()
                   for k, p in setup.method.backbone.named_parameters()}
        leaked = sum(int(weights[k.split("/", 1)[1]][~m].count_nonzero())
                     for k, m in masks.items() if k.startswith("online/"))
        kept = sum(int(m.sum()) for k, m in masks.items() if k.startswith("online/"))
        total = sum(m.numel() for k, m in masks.items() if k.startswith("online/"))
        print(f"{name:9s} online density {kept / total:.3f}, nonzero weights outside it: {leaked}")


if __name__ == "__main__":
    main()
