"""The training cost of a whole run (or of a config before training) and its speedup over dense.

`cost_report(path)` integrates, over every optimizer step, the cost of every GEMM the step runs
(gemms.py) at the per-layer density in force at that step (timeline.py), on the accelerator
model (accelerator.py), plus element-wise work: mask updates, score EMA, the EMA target update.
RigL/GraNet also pay a dense weight gradient at every update step (flops.WGRAD_RULES). The
baseline is the same config with `sparsity.algorithm = "dense"`: same workload, every density 1.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from torch import nn

from synccp import rundir
from synccp.cost.accelerator import DEFAULT_ACCELERATOR, Accelerator
from synccp.cost.elementwise import elementwise
from synccp.cost.evaluator import Evaluator, integrate
from synccp.cost.flops import WGRAD_RULES
from synccp.cost.report import format_cost, layer_entries, totals, write_cost_json
from synccp.cost.timeline import (
    Clock,
    Interval,
    config_clock,
    records_timeline,
    schedule_timeline,
)
from synccp.cost.workload import Workload, build_workload
from synccp.sparsity.registry import policy_for
from synccp.specs import RunSpec

LOG = logging.getLogger(__name__)

__all__ = ["Workload", "build_workload", "config_report", "cost_report", "format_cost",
           "run_report", "write_cost_json"]


def _report(spec: RunSpec, workload: Workload, clock: Clock, intervals: list[Interval],
            updates: list[int], *, masks: dict | None, source: dict, accel: Accelerator) -> dict:
    """Sparse run and dense baseline, integrated, laid out as cost.json."""
    algorithm = spec.sparsity.algorithm
    sparse_eval = Evaluator(workload, spec, accel, masks)
    run = integrate(sparse_eval, intervals, updates,
                    dense_gradient_updates=policy_for(algorithm).dense_gradients)
    dense_spec = dataclasses.replace(
        spec, sparsity=dataclasses.replace(spec.sparsity, algorithm="dense")
    )
    dense_eval = Evaluator(workload, dense_spec, accel, None)
    dense_step = dense_eval.step({})
    final_step = sparse_eval.step(intervals[-1].densities)
    work = elementwise(
        workload, spec, clock=clock, updates=updates, intervals=intervals, accel=accel
    )
    dense_work = elementwise(
        workload, dense_spec, clock=clock, updates=[], intervals=[], accel=accel
    )
    summary = totals(run, work, dense_step, dense_work, clock.total_steps, accel)
    return {
        **source,
        "run": {
            "method": spec.method.name,
            "algorithm": algorithm,
            "granularity": spec.sparsity.granularity,
            "backbone": spec.model.backbone,
            "width": spec.model.width,
            "batch_size": workload.batch,
            "steps_per_epoch": clock.steps_per_epoch,
            "total_steps": clock.total_steps,
            "mask_updates": len(updates),
            "wgrad_rule": WGRAD_RULES[algorithm],
        },
        "accelerator": accel.as_dict(),
        "layers": layer_entries(workload, final_step, run, dense_step, sparse_eval, intervals[-1]),
        "elementwise": work,
        **summary,
    }


def config_report(
    spec: RunSpec,
    *,
    accelerator: Accelerator = DEFAULT_ACCELERATOR,
    backbone: nn.Module | None = None,
    heads: dict[str, nn.Module] | None = None,
) -> dict:
    """Cost of training `spec` before it runs: schedule densities, uniform across layers."""
    workload = build_workload(spec, backbone=backbone, heads=heads)
    clock = config_clock(spec)
    intervals, updates = schedule_timeline(spec, clock, workload.prunable)
    source = {
        "source": "config",
        "density_source": "sparsity schedule (synccp.sparsity.schedule.branch_densities): the "
                          "same density for "
        "every prunable layer that fits the granularity; masks are modelled as random "
        "(binomial column counts; N:M not assumed transposable)",
    }
    return _report(
        spec, workload, clock, intervals, updates, masks=None, source=source, accel=accelerator
    )


def run_report(
    run_dir: str | Path,
    *,
    accelerator: Accelerator = DEFAULT_ACCELERATOR,
    backbone: nn.Module | None = None,
    heads: dict[str, nn.Module] | None = None,
) -> dict:
    """Cost of a finished (or running) run from its config.json, metrics.jsonl, summary.json and
    masks.safetensors."""
    run_dir = Path(run_dir)
    spec = rundir.read_spec(run_dir)
    workload = build_workload(spec, backbone=backbone, heads=heads)
    if rundir.is_finished(run_dir):
        summary = rundir.read_summary(
            run_dir / rundir.SUMMARY, need_sparsity=False
        )  # names file and key
        clock = Clock(summary["steps_per_epoch"], summary["total_steps"])
    else:
        clock = config_clock(spec)
    intervals, updates = records_timeline(
        rundir.read_metrics(run_dir, "mask_update"), clock.total_steps
    )
    masks = _load_masks(run_dir / rundir.MASKS, workload.prunable)
    source = {
        "source": "run",
        "run_dir": str(run_dir),
        "density_source": "metrics.jsonl mask_update records (per layer and branch); load "
                          "imbalance and N:M "
        "transposability from the final masks"
        + ("" if masks else " (masks.safetensors missing: random masks modelled)"),
    }
    return _report(
        spec, workload, clock, intervals, updates, masks=masks, source=source, accel=accelerator
    )


def _load_masks(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor] | None:
    if not path.exists():
        LOG.warning("%s is missing: modelling random masks at the logged densities", path)
        return None
    from synccp.rundir.files import check_masks, read_tensors

    masks = read_tensors(path, what="the masks")
    check_masks(masks, path, shapes)  # bool, both branches, this run's layer shapes
    return masks


def cost_report(path: Path, *, accelerator: Accelerator = DEFAULT_ACCELERATOR) -> dict:
    """Training cost of a run directory or of a config TOML (before training), as cost.json."""
    path = Path(path)
    if path.is_dir():
        return run_report(path, accelerator=accelerator)
    if path.is_file():
        return config_report(rundir.spec_of(path), accelerator=accelerator)
    raise FileNotFoundError(f"synccp cost: {path} is neither a run directory nor a config file")
