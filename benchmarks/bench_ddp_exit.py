"""How often does a finished 2-process DDP job abort at interpreter exit, with and without
`synccp.distributed.end_worker`?

Launches `torchrun --standalone --nproc_per_node=2` on a minimal worker `--launches` times per
mode, interleaved: the worker opens the gloo group, trains a Linear layer through
DistributedDataParallel for 3 steps, destroys the group, and (rank 0 only) waits 0.3 s, as the
CLI's rank 0 does while it evaluates. Mode `return` then leaves Python normally; mode
`end_worker` calls `synccp.distributed.end_worker(0)`. Prints the failed launches per mode and
the message of the first failure. This is the repro behind docs/reliability.md §1 ("exit").

    .venv/bin/python benchmarks/bench_ddp_exit.py --launches 40
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

WORKER = """
import sys, time, torch
import torch.distributed as dist
from synccp.distributed import end_worker
dist.init_process_group("gloo")
rank = dist.get_rank()
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 3))
for _ in range(3):
    model(torch.ones(2, 3)).sum().backward()
del model
dist.destroy_process_group()
if rank == 0:
    time.sleep(0.3)
if sys.argv[1] == "end_worker":
    end_worker(0)
"""


def launch(worker: Path, mode: str) -> tuple[bool, str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(worker), mode]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    message = next(
        (line for line in done.stderr.splitlines() if "terminate" in line or "Error" in line), ""
    )
    return done.returncode == 0, message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=40, help="torchrun launches per mode")
    parser.add_argument("--worker", type=Path, default=Path("/tmp/synccp_bench_ddp_exit_worker.py"))
    args = parser.parse_args()
    args.worker.write_text(WORKER)
    print(
        f"torch {torch.__version__} | Python {platform.python_version()} | {platform.machine()} "
        f"| {os.cpu_count()} CPUs | {args.launches} launches per mode, interleaved"
    )
    modes = ("return", "end_worker")
    failed = {mode: 0 for mode in modes}
    first = {mode: "" for mode in modes}
    start = time.perf_counter()
    for _ in range(args.launches):
        for mode in modes:
            ok, message = launch(args.worker, mode)
            if not ok:
                failed[mode] += 1
                first[mode] = first[mode] or message
    for mode in modes:
        print(
            f"{mode:>10s}: {failed[mode]:3d}/{args.launches} launches failed"
            + (f"  (first: {first[mode]})" if first[mode] else "")
        )
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
