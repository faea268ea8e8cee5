"""The first steps of a finished run again, with `--set` changes: its training loss, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python tools/early_loss.py \
        studies/byol_recipe/byol_dense_s2_2d72c6afd026b143 --steps 300 --out /tmp/early/lr05 \
        --set train.lr=0.5

Retrains the run's config (its config.json, the same seed) with the changes for `--steps`
optimizer steps only (`pretrain(..., stop_after=...)`: the schedule stays the full run's, so
these are exactly the run's first steps when nothing is changed and the CPU capability is the
run's), then prints the logged loss every 50 steps (every logged step under 100) beside the
original run's, and where the two first differ. A diagnostic of an early phase (docs/results.md,
"The bar, with three seeds"), not a study run: loss is not probe accuracy, and a change of τ
moves BYOL's loss by itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from synccp import rundir
from synccp.config import load_config
from synccp.train.loop import pretrain


def losses(run: Path) -> dict[int, float]:
    """Step → logged training loss of a run's metrics.jsonl."""
    return {int(r["step"]): float(r["loss"]) for r in rundir.read_metrics(run, "train")}


def first_difference(new: dict[int, float], old: dict[int, float]) -> str:
    """Where two runs' logged losses part: "identical at every logged step (N)" or the first step
    whose loss differs. An unchanged config on the machine class that made the run gives the
    former; another CPU capability (AVX2 against AVX512) gives the latter from the first steps."""
    shared = sorted(set(new) & set(old))
    for step in shared:
        if new[step] != old[step]:
            return (f"first differs at step {step}: {new[step]:.6f} against the run's "
                    f"{old[step]:.6f}")
    return f"identical at every logged step ({len(shared)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", type=Path, help="a finished run directory (its config.json)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps to train")
    parser.add_argument("--out", type=Path, required=True, help="a new run directory")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_config(args.run / rundir.CONFIG, args.sets)
    started = time.perf_counter()
    pretrain(cfg, args.out, stop_after=args.steps)
    new, old = losses(args.out), losses(args.run)
    print(f"{args.run.name} {' '.join(args.sets) or '(unchanged)'}: {args.steps} steps in "
          f"{time.perf_counter() - started:.0f} s")
    print("step  loss (this)  loss (the run)")
    stride = 50 if args.steps >= 100 else 1  # a short check shows every logged step
    for step in sorted(s for s in new if s % stride == 0):
        print(f"{step:4d}  {new[step]:11.4f}  {old.get(step, float('nan')):14.4f}")
    print(first_difference(new, old))


if __name__ == "__main__":
    main()
