"""Where a dense Barlow Twins run stands: its loss terms and its features' effective rank.

    OMP_NUM_THREADS=1 .venv/bin/python tools/barlow_terms.py \
        studies/barlow_recipe/barlow_dense_s0_d0fa6523a5346a87

Over `--batches` batches of the run's own training views (drawn by its view stream from step
`--step` on), at initialization (the run's seed) and from the run's newest checkpoint, prints
one JSON line each, means over the batches: the on-diagonal term Σ(1 − C_ii)², λ × the
off-diagonal term, the mean of C's diagonal (1 is the target), and the effective rank
(Σσ)² / Σσ² of the backbone's centred features. BatchNorm in training mode, as in a training
step; no gradient. A diagnostic (docs/results.md, "Barlow Twins' bar"), not a probe. Needs the
run's checkpoint, which is not committed: on a fresh clone, re-run the cell first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from synccp import rundir
from synccp.config import load_resolved
from synccp.losses import correlation_terms, cross_correlation
from synccp.rundir.checkpoint import load_checkpoint
from synccp.train.setup import build_setup


def terms(method, view_a: torch.Tensor, view_b: torch.Tensor) -> dict:
    """The Barlow Twins loss terms (unscaled) and the backbone features' effective rank."""
    with torch.no_grad():
        features = method.backbone(view_a)
        z_a, z_b = method.projector(features), method.projector(method.backbone(view_b))
        c = cross_correlation(z_a, z_b)
        on, off = correlation_terms(c)
        sv = torch.linalg.svdvals(features - features.mean(dim=0))
    return {
        "on_diagonal": round(float(on), 2),
        "lambda_off_diagonal": round(float(method.lambda_offdiag * off), 2),
        "mean_diagonal": round(float(torch.diagonal(c).mean()), 4),
        "feature_effective_rank": round(float(sv.sum() ** 2 / sv.pow(2).sum()), 2),
        "feature_dim": int(features.shape[1]),
    }


def mean_terms(method, views: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """`terms` averaged over batches of views."""
    rows = [terms(method, a, b) for a, b in views]
    means = {key: round(sum(r[key] for r in rows) / len(rows), 4)
             for key in rows[0] if key != "feature_dim"}
    return {**means, "feature_dim": rows[0]["feature_dim"], "batches": len(rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--step", type=int, default=5, help="first step whose views (default 5)")
    parser.add_argument("--batches", type=int, default=4, help="batches averaged (default 4)")
    args = parser.parse_args(argv)
    cfg = load_resolved(args.run / rundir.CONFIG)
    if cfg.method.name != "barlow" or cfg.sparsity.algorithm != "dense":
        parser.error(f"{args.run}: a dense Barlow Twins run is needed, this one is "
                     f"{cfg.method.name} / {cfg.sparsity.algorithm}")
    setup = build_setup(cfg, torch.device("cpu"))  # seeds: the run's initialization
    method = setup.method.train()
    views = [setup.batches.views(args.step + i) for i in range(args.batches)]
    print(json.dumps({"state": "initialization", **mean_terms(method, views)}))
    state = load_checkpoint(args.run)
    method.load_state_dict(state["method"])
    print(json.dumps({"state": f"step {state['step']}", **mean_terms(method, views)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
