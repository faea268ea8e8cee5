"""Does `synccp sweep --jobs J` finish a grid sooner than one run at a time on this machine?

Writes a small grid of `--runs` cells (same config, different seeds), runs it with each value of
`--jobs` into a fresh folder, interleaved over `--reps` repetitions, and prints the wall time of
each whole sweep, runs per hour and the speedup over `--jobs 1` (median over the repetitions).
A run is the real thing: `synccp pretrain` in a subprocess, training, kNN and linear probes and
the cost model. On a CPU the sweep splits the cores between jobs (OMP_NUM_THREADS = cores / J);
on one GPU every job shares the device, which is what issue 5 asks to measure.

    .venv/bin/python benchmarks/bench_sweep_jobs.py                         # CPU, tiny runs
    .venv/bin/python benchmarks/bench_sweep_jobs.py --jobs 1 2 4 --runs 8 \\
        --set train.device=cuda --set model.width=64 --set train.epochs=5   # one GPU
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from synccp.sweep import run_sweep

TINY = {"data.subset": 2048, "model.width": 8, "train.epochs": 2, "train.batch_size": 256,
        "sparsity.start_epoch": 0.25, "sparsity.end_epoch": 1.5, "sparsity.update_every": 2,
        "eval.linear_epochs": 10, "eval.raw_baseline": "false"}


def write_grid(folder: Path, runs: int) -> Path:
    lines = ["[sweep]", 'name = "bench_jobs"', f"seeds = {list(range(runs))}", "", "[fixed]"]
    lines += [f"{key} = {value}" for key, value in TINY.items()]
    path = folder / "grid.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=4, help="cells in the grid (seeds 0..runs-1)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config key for every cell, as synccp sweep --set (e.g. train.device=cuda)",
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_sweep_jobs_") as tmp:
        grid = write_grid(Path(tmp), args.runs)
        walls: dict[int, list[float]] = {j: [] for j in args.jobs}
        for rep in range(args.reps):
            for jobs in args.jobs:
                out = Path(tmp) / f"rep{rep}_jobs{jobs}"
                start = time.perf_counter()
                result = run_sweep(grid, jobs=jobs, out=out, overrides=args.set, progress=False)
                walls[jobs].append(time.perf_counter() - start)
                if result.failed:
                    raise SystemExit(f"jobs {jobs}: runs failed: {result.failed}")
                print(
                    f"rep {rep} jobs {jobs}: {walls[jobs][-1]:.1f} s for {args.runs} runs",
                    flush=True,
                )
    print(
        f"\n{platform.node()} · {os.cpu_count()} cores · torch {torch.__version__} · "
        f"cuda {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
    print(f"grid: {args.runs} runs of {TINY}, --set {args.set}")
    base = statistics.median(walls[args.jobs[0]])
    print(
        f"{'jobs':>5s} {'median wall s':>14s} {'runs/hour':>10s} "
        f"{'vs jobs ' + str(args.jobs[0]):>10s}"
    )
    for jobs in args.jobs:
        wall = statistics.median(walls[jobs])
        print(f"{jobs:5d} {wall:14.1f} {3600 * args.runs / wall:10.1f} {base / wall:9.2f}×")


if __name__ == "__main__":
    main()
