"""Cost of checkpoint integrity: save/load of a BYOL-sized state with and without the checksum.

A ResNet-18 (width 64, CIFAR stem) state four times over (online, target, momentum, scores;
128 MiB). `--old FILE` times a previous `train/checkpoint.py` (e.g. `git show
770d01b:src/synccp/train/checkpoint.py > /tmp/old_checkpoint.py`) side by side with this one:
its save, and its load (`torch.load(weights_only=False)`, what it did). Interleaved repetitions,
medians, one thread.

    python benchmarks/bench_checkpoint.py --old /tmp/old_checkpoint.py --repeats 7
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from synccp.models import build_backbone
from synccp.rundir import checkpoint as new


def _state() -> dict:
    weights = dict(build_backbone("resnet18", stem="cifar", width=64, in_channels=3).state_dict())
    floats = [v for v in weights.values() if v.is_floating_point()]
    return {
        "step": 1,
        "method": {
            **{f"online.{k}": v for k, v in weights.items()},
            **{f"target.{k}": v.clone() for k, v in weights.items()},
        },
        "optimizer": {"state": {i: {"momentum_buffer": v.clone()} for i, v in enumerate(floats)}},
        "sparsifier": {"scores": {k: v.clone() for k, v in weights.items() if v.dim() == 4}},
    }


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, help="a previous train/checkpoint.py to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = _state()
    old = None
    if args.old:
        spec = importlib.util.spec_from_file_location("old_checkpoint", args.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    times: dict[str, list[float]] = {}
    folders = {name: Path(tempfile.mkdtemp()) for name in ("old", "new")}
    for _ in range(args.repeats):
        times.setdefault("checksum", []).append(_timed(lambda: new.content_checksum(state)))
        times.setdefault("new save", []).append(
            _timed(lambda: new.save_checkpoint(folders["new"], state, identity="x"))
        )
        times.setdefault("new load", []).append(
            _timed(lambda: new.load_checkpoint(folders["new"], identity="x"))
        )
        if old is not None:
            times.setdefault("old save", []).append(
                _timed(lambda: old.save_checkpoint(folders["old"], state))
            )
            last = folders["old"] / "checkpoints" / "last.pt"
            times.setdefault("old load", []).append(
                _timed(lambda last=last: torch.load(last, weights_only=False))
            )
    for name, values in times.items():
        print(f"{name:10s} median {statistics.median(values):.3f} s over {len(values)}")


if __name__ == "__main__":
    main()
