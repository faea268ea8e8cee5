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
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from synccp.config import Config, load_config, load_resolved
from synccp.cost import structure
from synccp.cost.accelerator import DEFAULT_ACCELERATOR, Accelerator, PhaseCost, elementwise_cost, phase_cost
from synccp.cost.flops import WGRAD_RULES
from synccp.cost.gemms import Layer, Pass, method_passes, pass_phases, training_layers
from synccp.cost.report import format_cost, layer_entries, totals, write_cost_json
from synccp.methods import METHODS
from synccp.sparsity.algorithms import (last_scored_step, regrow_settings, selected_branches,
                                        tracked_branches)
from synccp.sparsity.registry import policy_for
from synccp.sparsity.schedule import cosine_drop_fraction, sparsity_steps
from synccp.cost.timeline import (Clock, Interval, config_clock, image_geometry, interval_at,
                                  records_timeline, schedule_timeline)

LOG = logging.getLogger(__name__)
Key = tuple[str, str, str]  # (layer weight name, phase, "branch/view")

__all__ = ["Workload", "build_workload", "config_report", "cost_report", "format_cost",
           "run_report", "write_cost_json"]


@dataclass(frozen=True)
class Workload:
    """What one optimizer step runs: traced layers, encoder passes and the per-view batch."""

    method: str
    batch: int
    layers: tuple[Layer, ...]
    passes: tuple[Pass, ...]

    @property
    def prunable(self) -> dict[str, tuple[int, ...]]:
        """Backbone weights that carry masks: every conv/linear except the stem."""
        return {l.name: l.weight_shape for l in self.layers if l.part == "backbone" and not l.first}


def build_workload(cfg: Config, *, backbone: nn.Module | None = None,
                   heads: dict[str, nn.Module] | None = None) -> Workload:
    """Trace `backbone` + `heads` (built from `cfg` by synccp.models / synccp.methods if None)."""
    channels, size = image_geometry(cfg)
    if backbone is None:
        backbone, heads = _build_model(cfg, channels)
    layers = training_layers(backbone, in_channels=channels, image_size=size, heads=heads)
    return Workload(cfg.method.name, cfg.train.batch_size, tuple(layers), method_passes(cfg.method.name))


def _build_model(cfg: Config, channels: int) -> tuple[nn.Module, dict[str, nn.Module]]:
    from synccp.methods import build_method, method_defaults
    from synccp.models import build_backbone

    backbone = build_backbone(cfg.model.backbone, stem=cfg.model.stem, width=cfg.model.width,
                              in_channels=channels)
    allowed = method_defaults(cfg.method.name)
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.method).items() if k in allowed and v is not None}
    method = build_method(cfg.method.name, backbone, **kwargs)
    heads = {part: getattr(method, part) for part in ("projector", "predictor")
             if isinstance(getattr(method, part, None), nn.Module)}
    return backbone, heads


class _Evaluator:
    """Per-step phase costs of a workload, cached by (layer, branch, density, dense gradient)."""

    def __init__(self, workload: Workload, cfg: Config, accel: Accelerator,
                 masks: dict[str, torch.Tensor] | None):
        self.workload, self.cfg, self.accel, self.masks = workload, cfg, accel, masks or {}
        self._states: dict[tuple[str, str, float], structure.LayerSparsity | None] = {}
        self._costs: dict[tuple, PhaseCost] = {}
        self._samplers: dict[str, structure.RandomMask] = {}  # one random draw per layer, every density

    def state(self, layer: Layer, branch: str, density: float) -> structure.LayerSparsity | None:
        key = (layer.name, branch, density)
        if key not in self._states:
            self._states[key] = None if density >= 1.0 else self._new_state(layer, branch, density)
        return self._states[key]

    def _new_state(self, layer: Layer, branch: str, density: float) -> structure.LayerSparsity:
        s = self.cfg.sparsity
        mask = self.masks.get(f"{branch}/{layer.name}")
        if mask is not None and s.granularity != "channel":
            final = self.state_of_mask(layer, branch, mask)
            if density >= final.density - 1.0 / layer.numel:
                return final if density <= final.density + 1.0 / layer.numel else structure.interpolate(final, density)
        generator = torch.Generator().manual_seed(self.cfg.train.seed + zlib.crc32(layer.name.encode()))
        block = (s.block_out, s.block_in) if s.granularity == "block" else (1, 1)
        if s.granularity in ("unstructured", "block") and layer.name not in self._samplers:
            self._samplers[layer.name] = structure.RandomMask(layer.weight_shape, block, generator)
        return structure.from_density(layer.weight_shape, density, granularity=s.granularity, n=s.n,
                                      m=s.m, block=(s.block_out, s.block_in), generator=generator,
                                      sampler=self._samplers.get(layer.name))

    def state_of_mask(self, layer: Layer, branch: str, mask: torch.Tensor) -> structure.LayerSparsity:
        key = (layer.name, branch, -1.0)
        if key not in self._states:
            self._states[key] = structure.from_mask(mask.reshape(layer.weight_shape),
                                                    n=self.cfg.sparsity.n, m=self.cfg.sparsity.m)
        return self._states[key]

    def step(self, densities: dict[str, dict[str, float]], *, dense_gradients: bool = False
             ) -> dict[Key, PhaseCost]:
        """Cost of every (layer, phase, branch/view) of one step at `densities`."""
        costs: dict[Key, PhaseCost] = {}
        for training_pass in self.workload.passes:
            for layer in self.workload.layers:
                if layer.part not in training_pass.parts:
                    continue
                density = densities.get(training_pass.branch, {}).get(layer.name, 1.0)
                for phase in pass_phases(layer, training_pass):
                    key = (layer.name, phase, f"{training_pass.branch}/{training_pass.view}")
                    costs[key] = self._phase(layer, phase, training_pass.branch, density,
                                             dense_gradients and phase == "wgrad")
        return costs

    def _phase(self, layer: Layer, phase: str, branch: str, density: float, dense_gradients: bool
               ) -> PhaseCost:
        key = (layer.name, phase, branch, density, dense_gradients)
        if key not in self._costs:
            s = self.cfg.sparsity
            self._costs[key] = phase_cost(layer, phase, self.workload.batch,
                                          self.state(layer, branch, density), granularity=s.granularity,
                                          n=s.n, m=s.m, dense_gradients=dense_gradients, accel=self.accel)
        return self._costs[key]


def integrate(evaluator: _Evaluator, intervals: list[Interval], updates: list[int], *,
              dense_gradient_updates: bool) -> dict[Key, dict[str, float]]:
    """Σ over steps of each entry's cost at the density in force; RigL/GraNet update steps swap
    the sparse wgrad for a dense one."""
    run: dict[Key, dict[str, float]] = defaultdict(lambda: {"macs": 0, "cycles": 0.0, "energy_pj": 0.0})
    for interval in intervals:
        for key, cost in evaluator.step(interval.densities).items():
            _add(run[key], cost, interval.steps)
    if dense_gradient_updates:
        for update in updates:
            densities = interval_at(intervals, update - 1).densities
            sparse, dense = evaluator.step(densities), evaluator.step(densities, dense_gradients=True)
            for key in (k for k in dense if k[1] == "wgrad"):
                _add(run[key], dense[key], 1)
                _add(run[key], sparse[key], -1)
    return dict(run)


def _add(total: dict[str, float], cost: PhaseCost, times: int) -> None:
    total["macs"] += cost.macs * times
    total["cycles"] += cost.cycles * times
    total["energy_pj"] += cost.energy_pj * times


def elementwise(workload: Workload, cfg: Config, *, clock: Clock, updates: list[int],
                intervals: list[Interval], accel: Accelerator) -> dict[str, dict]:
    """Whole-run element-wise work (each op one lane-cycle, traffic at DRAM bandwidth), counted
    with the Sparsifier's own rules (`synccp.sparsity.algorithms`): the EMA target update
    ξ ← τξ + (1−τ)θ of backbone + projector weights every step (2 ops, 3 accesses per weight);
    SyncCP's target shadow ξ += (1−τ)·shadow on steps where the target is denser; the score EMA of
    each tracked branch (`tracked_branches`) up to the last scored step; per update, score +
    threshold selection + mask write for each selected branch (`selected_branches`, 4 ops per
    weight; read weights and scores, write 1-bit masks) and the drop-and-grow of RigL/GraNet on
    the online branch (reading the dense gradient too)."""
    size, work, s = accel.bytes_per_element, {}, cfg.sparsity
    ema = sum(l.numel for l in workload.layers if l.part in ("backbone", "projector"))
    prunable = sum(l.numel for l in workload.layers if l.name in workload.prunable)
    policy, shared = policy_for(s.algorithm), METHODS[workload.method].shared_encoder
    if not shared:
        work["target_ema"] = _times(elementwise_cost(2 * ema, 3 * ema * size, accel), clock.total_steps)
        denser = _shadow_steps(intervals, clock.total_steps) if policy.nested else 0
        if denser:
            work["target_shadow"] = _times(elementwise_cost(2 * prunable, 3 * prunable * size, accel), denser)
    start, end, regrow_end = sparsity_steps(s, epochs=cfg.train.epochs, steps_per_epoch=clock.steps_per_epoch,
                                            total_steps=clock.total_steps)
    drop, regrow_end = regrow_settings(policy, drop_fraction=s.drop_fraction, regrow_end_step=regrow_end,
                                       total_steps=clock.total_steps)
    branches = len(tracked_branches(policy, shared=shared, score_ema=s.score_ema))
    if branches:
        scored = min(clock.total_steps, last_scored_step(policy, end_step=end, regrow_end_step=regrow_end,
                                                         total_steps=clock.total_steps))
        per = elementwise_cost(2 * prunable * branches, 3 * prunable * size * branches, accel)
        work["score_ema"] = _times(per, scored)
    selections = len([u for u in updates if policy.reselect and (policy.cadence != "regrow" or u <= end)])
    selections *= selected_branches(policy)
    if selections:
        traffic = prunable * (2 * size + 1 / 8)
        work["mask_update"] = _times(elementwise_cost(4 * prunable, traffic, accel), selections)
    if policy.regrow is not None:
        regrows = len([u for u in updates if cosine_drop_fraction(u, initial=drop, final=policy.regrow.floor,
                                                                  end=regrow_end) > 0])
        if regrows:
            traffic = prunable * (3 * size + 1 / 8)
            work["drop_and_grow"] = _times(elementwise_cost(4 * prunable, traffic, accel), regrows)
    return work


def _shadow_steps(intervals: list[Interval], total_steps: int) -> int:
    """Steps k = 1..T whose target update follows a mask state with a denser target: after the
    update at step k the masks are those of the interval holding step index k."""
    count = 0
    for interval in intervals:
        if _target_denser(interval):
            high = total_steps if interval.end >= total_steps else interval.end - 1
            count += max(0, high - max(interval.start, 1) + 1)
    return count


def _target_denser(interval: Interval) -> bool:
    online, second = interval.densities.get("online", {}), interval.densities.get("second", {})
    return any(second.get(name, 1.0) > density for name, density in online.items())


def _times(cost: dict, times: int) -> dict:
    return {key: value * times for key, value in cost.items()} | {"times": times}


def _report(cfg: Config, workload: Workload, clock: Clock, intervals: list[Interval],
            updates: list[int], *, masks: dict | None, source: dict, accel: Accelerator) -> dict:
    """Sparse run and dense baseline, integrated, laid out as cost.json."""
    algorithm = cfg.sparsity.algorithm
    sparse_eval = _Evaluator(workload, cfg, accel, masks)
    run = integrate(sparse_eval, intervals, updates,
                    dense_gradient_updates=policy_for(algorithm).dense_gradients)
    dense_cfg = dataclasses.replace(cfg, sparsity=dataclasses.replace(cfg.sparsity, algorithm="dense"))
    dense_eval = _Evaluator(workload, dense_cfg, accel, None)
    dense_step = dense_eval.step({})
    final_step = sparse_eval.step(intervals[-1].densities)
    work = elementwise(workload, cfg, clock=clock, updates=updates, intervals=intervals, accel=accel)
    dense_work = elementwise(workload, dense_cfg, clock=clock, updates=[], intervals=[], accel=accel)
    summary = totals(run, work, dense_step, dense_work, clock.total_steps, accel)
    return {
        **source,
        "run": {"method": cfg.method.name, "algorithm": algorithm,
                "granularity": cfg.sparsity.granularity, "backbone": cfg.model.backbone,
                "width": cfg.model.width, "batch_size": workload.batch,
                "steps_per_epoch": clock.steps_per_epoch, "total_steps": clock.total_steps,
                "mask_updates": len(updates), "wgrad_rule": WGRAD_RULES[algorithm]},
        "accelerator": accel.as_dict(),
        "layers": layer_entries(workload, final_step, run, dense_step, sparse_eval, intervals[-1]),
        "elementwise": work,
        **summary,
    }


def config_report(cfg: Config, *, accelerator: Accelerator = DEFAULT_ACCELERATOR,
                  backbone: nn.Module | None = None, heads: dict[str, nn.Module] | None = None) -> dict:
    """Cost of training `cfg` before it runs: schedule densities, uniform across layers."""
    workload = build_workload(cfg, backbone=backbone, heads=heads)
    clock = config_clock(cfg)
    intervals, updates = schedule_timeline(cfg, clock, workload.prunable)
    source = {"source": "config", "density_source":
              "sparsity schedule (synccp.sparsity.schedule.branch_densities): the same density for "
              "every prunable layer that fits the granularity; masks are modelled as random "
              "(binomial column counts; N:M not assumed transposable)"}
    return _report(cfg, workload, clock, intervals, updates, masks=None, source=source, accel=accelerator)


def run_report(run_dir: str | Path, *, accelerator: Accelerator = DEFAULT_ACCELERATOR,
               backbone: nn.Module | None = None, heads: dict[str, nn.Module] | None = None) -> dict:
    """Cost of a finished (or running) run from its config.json, metrics.jsonl, summary.json and
    masks.safetensors."""
    from synccp.results import rundir

    run_dir = Path(run_dir)
    cfg = load_resolved(run_dir / rundir.CONFIG)
    workload = build_workload(cfg, backbone=backbone, heads=heads)
    if (run_dir / rundir.SUMMARY).is_file():
        summary = rundir.read_summary(run_dir / rundir.SUMMARY, need_sparsity=False)  # names file and key
        clock = Clock(summary["steps_per_epoch"], summary["total_steps"])
    else:
        clock = config_clock(cfg)
    intervals, updates = records_timeline(rundir.read_metrics(run_dir, "mask_update"), clock.total_steps)
    masks = _load_masks(run_dir / rundir.MASKS, workload.prunable)
    source = {"source": "run", "run_dir": str(run_dir), "density_source":
              "metrics.jsonl mask_update records (per layer and branch); load imbalance and N:M "
              "transposability from the final masks" + ("" if masks else " (masks.safetensors "
              "missing: random masks modelled)")}
    return _report(cfg, workload, clock, intervals, updates, masks=masks, source=source, accel=accelerator)


def _load_masks(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor] | None:
    if not path.exists():
        LOG.warning("%s is missing: modelling random masks at the logged densities", path)
        return None
    from synccp.results.files import check_masks, read_tensors

    masks = read_tensors(path, what="the masks")
    check_masks(masks, path, shapes)  # bool, both branches, this run's layer shapes
    return masks


def cost_report(path: Path, *, accelerator: Accelerator = DEFAULT_ACCELERATOR) -> dict:
    """Training cost of a run directory or of a config TOML (before training), as cost.json."""
    path = Path(path)
    if path.is_dir():
        return run_report(path, accelerator=accelerator)
    if path.is_file():
        return config_report(load_config(path), accelerator=accelerator)
    raise FileNotFoundError(f"synccp cost: {path} is neither a run directory nor a config file")
