"""Whole-run element-wise work of sparse training: EMA target, score EMA, mask updates and
drop-and-grow, counted with the Sparsifier's own rules (`synccp.sparsity.algorithms`)."""

from __future__ import annotations

from synccp.cost.accelerator import Accelerator, elementwise_cost
from synccp.cost.timeline import Clock, Interval
from synccp.cost.workload import Workload
from synccp.methods import METHODS
from synccp.sparsity.algorithms import (
    last_scored_step,
    selected_branches,
    tracked_branches,
)
from synccp.sparsity.registry import policy_for
from synccp.specs import RunSpec


def elementwise(workload: Workload, spec: RunSpec, *, clock: Clock, updates: list[int],
                intervals: list[Interval], accel: Accelerator) -> dict[str, dict]:
    """Whole-run element-wise work (each op one lane-cycle, traffic at DRAM bandwidth), counted
    with the Sparsifier's own rules (`synccp.sparsity.algorithms`): the EMA target update
    ξ ← τξ + (1−τ)θ of backbone + projector weights every step (2 ops, 3 accesses per weight);
    SyncCP's target shadow ξ += (1−τ)·shadow on steps where the target is denser; the score EMA of
    each tracked branch (`tracked_branches`) up to the last scored step; per update, score +
    threshold selection + mask write for each selected branch (`selected_branches`, 4 ops per
    weight; read weights and scores, write 1-bit masks) and the drop-and-grow of RigL/GraNet on
    the online branch (reading the dense gradient too)."""
    size, work, s = accel.bytes_per_element, {}, spec.sparsity
    ema = sum(layer.numel for layer in workload.layers if layer.part in ("backbone", "projector"))
    prunable = sum(layer.numel for layer in workload.layers if layer.name in workload.prunable)
    policy, shared = policy_for(s.algorithm), METHODS[workload.method].shared_encoder
    if not shared:
        work["target_ema"] = _times(
            elementwise_cost(2 * ema, 3 * ema * size, accel), clock.total_steps
        )
        denser = _shadow_steps(intervals, clock.total_steps) if policy.nested else 0
        if denser:
            work["target_shadow"] = _times(
                elementwise_cost(2 * prunable, 3 * prunable * size, accel), denser
            )
    sparsity = spec.sparsity_spec(steps_per_epoch=clock.steps_per_epoch,
                                  total_steps=clock.total_steps)
    _, end = sparsity.ramp
    _, regrow_end = sparsity.regrow_window()
    branches = len(tracked_branches(policy, shared=shared, score_ema=s.score_ema))
    if branches:
        scored = min(
            clock.total_steps,
            last_scored_step(
                policy, end_step=end, regrow_end_step=regrow_end, total_steps=clock.total_steps
            ),
        )
        per = elementwise_cost(2 * prunable * branches, 3 * prunable * size * branches, accel)
        work["score_ema"] = _times(per, scored)
    selections = len(
        [u for u in updates if policy.reselect and (policy.cadence != "regrow" or u <= end)]
    )
    selections *= selected_branches(policy)
    if selections:
        traffic = prunable * (2 * size + 1 / 8)
        work["mask_update"] = _times(elementwise_cost(4 * prunable, traffic, accel), selections)
    if policy.regrow is not None:
        regrows = len([u for u in updates if sparsity.drop_fraction_at(u) > 0])
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
