"""Cross-check the analytic array cycles of synccp.cost against SCALE-Sim v3 on real training GEMMs.

For every conv of a ResNet backbone (forward, dgrad, wgrad at a small batch) and for the forward
GEMMs under 2:4 sparsity, it prints our compute cycles next to SCALE-Sim's ("Total Cycles",
stalls excluded) and the relative difference, for the ws and os dataflows.

    SYNCCP_SCALESIM_PYTHON=/path/to/venv-with-scalesim/bin/python \\
        .venv/bin/python benchmarks/bench_cost_scalesim.py --backbone resnet18 --width 16 \\
        --image-size 32 --batch 1 --out runs/bench_cost_scalesim.json

The SCALE-Sim interpreter needs `scalesim==3.0.0` and `numpy<2.4` (see docs/cost.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from synccp.cost.accelerator import Accelerator
from synccp.cost.gemms import Pass, pass_phases, phase_gemm, training_layers
from synccp.cost.scalesim_bridge import CheckGemm, analytic_cycles, run_scalesim
from synccp.models import build_backbone


def workload_gemms(args: argparse.Namespace) -> tuple[list[CheckGemm], list[CheckGemm]]:
    """(dense GEMMs of all phases, forward GEMMs with 2:4 along k) of the backbone's convs."""
    backbone = build_backbone(args.backbone, stem=args.stem, width=args.width, in_channels=3)
    layers = training_layers(backbone, in_channels=3, image_size=args.image_size)
    train = Pass("online", "a", True, ("backbone",))
    dense, nm = [], []
    for index, layer in enumerate(layers):
        for phase in pass_phases(layer, train):
            gemm = phase_gemm(layer, phase, args.batch)
            dense.append(CheckGemm(f"l{index}_{phase}", gemm))
            if phase == "forward" and not layer.first:
                nm.append(CheckGemm(f"l{index}_fwd24", gemm, (2, 4)))
    return dense, nm


def compare(gemms: list[CheckGemm], accel: Accelerator, python: str | None) -> dict:
    started = time.perf_counter()
    theirs = run_scalesim(gemms, accel, python=python)
    ours = [analytic_cycles(item, accel) for item in gemms]
    errors = [(o - t) / t for o, t in zip(ours, theirs, strict=True)]
    rows = [
        {
            "gemm": item.name,
            "mnk": [item.gemm.m, item.gemm.n, item.gemm.k],
            "nm": item.nm,
            "ours": o,
            "scalesim": t,
            "rel_diff": e,
        }
        for item, o, t, e in zip(gemms, ours, theirs, errors, strict=True)
    ]
    return {
        "dataflow": accel.dataflow,
        "rows": rows,
        "max_abs_rel_diff": max(abs(e) for e in errors),
        "median_rel_diff": statistics.median(errors),
        "total_ours": sum(ours),
        "total_scalesim": sum(theirs),
        "scalesim_wall_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--stem", default="cifar")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--python", default=None, help="interpreter with scalesim + numpy<2.4")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    dense, nm = workload_gemms(args)
    results = {
        "args": vars(args) | {"out": str(args.out)},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "checks": [],
    }
    for dataflow in ("ws", "os"):
        accel = Accelerator(rows=args.rows, cols=args.cols, dataflow=dataflow)
        results["checks"].append({"kind": "dense"} | compare(dense, accel, args.python))
    accel = Accelerator(rows=args.rows, cols=args.cols, dataflow="ws")
    results["checks"].append({"kind": "2:4 forward"} | compare(nm, accel, args.python))
    for check in results["checks"]:
        print(
            f"{check['kind']:<12} {check['dataflow']}: {len(check['rows'])} GEMMs, "
            f"max |rel diff| {check['max_abs_rel_diff']:.4%}, median "
            f"{check['median_rel_diff']:.4%}, "
            f"total ours {check['total_ours']:.0f} vs SCALE-Sim {check['total_scalesim']:.0f} "
            f"({check['scalesim_wall_s']:.1f} s)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
