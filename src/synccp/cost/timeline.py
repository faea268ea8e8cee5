"""Densities over a run: which per-layer density each optimizer step ran at, and the update steps.

Two sources:
- a run directory's `metrics.jsonl` `mask_update` records (step 0 and every mask update), each
  giving per-branch, per-layer densities. A record at step u holds from optimizer step index u
  (0-based) until the next record: the masks of update u were made after step u−1's optimizer
  step.
- a config before training: `synccp.sparsity.schedule.branch_densities` at step 0 and at every
  update step, the same density for every prunable layer that fits the granularity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from synccp.sparsity.algorithms import policy_update_steps
from synccp.specs import RunSpec
from synccp.train.schedules import Clock, make_clock

TRAIN_IMAGES = {"fashion_mnist": 60000, "cifar10": 50000, "cifar100": 50000, "stl10": 105000,
                "imagenet": 1281167, "imagenet100": 126689}
NATIVE_SIZE = {
    "fashion_mnist": 28,
    "cifar10": 32,
    "cifar100": 32,
    "stl10": 96,
    "imagenet": 224,
    "imagenet100": 224,
}


@dataclass(frozen=True)
class Interval:
    """Optimizer step indices [start, end) that ran at `densities[branch][layer]` (missing = 1)."""

    start: int
    end: int
    densities: dict[str, dict[str, float]]

    @property
    def steps(self) -> int:
        return self.end - self.start


def config_clock(spec: RunSpec) -> Clock:
    """Steps per epoch and total steps as the trainer computes them (train/setup.py)."""
    images = spec.data.subset or TRAIN_IMAGES.get(spec.data.name, 0)
    if images <= 0:
        raise ValueError(
            f"data.subset must be > 0 to cost data.name={spec.data.name!r} before "
            f"training (its size is unknown), got {spec.data.subset}"
        )
    if spec.train.batch_size > images:
        raise ValueError(
            f"train.batch_size={spec.train.batch_size} is larger than the {images} "
            f"training images of data.name={spec.data.name!r}"
        )
    return make_clock(images, batch_size=spec.train.batch_size, epochs=spec.train.epochs)


def image_geometry(spec: RunSpec) -> tuple[int, int]:
    """(channels, image size) of the training views."""
    channels = 1 if spec.data.name == "fashion_mnist" else 3
    size = spec.data.image_size or NATIVE_SIZE.get(spec.data.name, 0)
    if size <= 0:
        raise ValueError(
            f"data.image_size must be > 0 for data.name={spec.data.name!r}, got "
            f"{spec.data.image_size}"
        )
    return channels, size


def records_timeline(records: list[dict], total_steps: int) -> tuple[list[Interval], list[int]]:
    """Intervals and update steps from `mask_update` records (the last record per step wins)."""
    by_step = {int(r["step"]): r for r in records if r.get("kind", "mask_update") == "mask_update"}
    if 0 not in by_step:
        raise ValueError(
            "metrics.jsonl has no mask_update record at step 0: cannot tell the "
            "densities the run started with"
        )
    logged = sorted(by_step)
    steps = [s for s in logged if s < total_steps]
    intervals = []
    for i, start in enumerate(steps):
        end = steps[i + 1] if i + 1 < len(steps) else total_steps
        density = by_step[start].get("density", {})
        layers = {
            branch: dict(density.get(branch, {}).get("layers", {}))
            for branch in ("online", "second")
        }
        if not layers["second"]:  # no second-branch densities logged: it uses the online masks
            layers["second"] = layers["online"]
        intervals.append(Interval(start, end, layers))
    return intervals, [s for s in logged if 0 < s <= total_steps]


def update_steps(spec: RunSpec, clock: Clock) -> list[int]:
    """Steps (1-based counts of optimizer steps) after which the Sparsifier changes masks: the
    Sparsifier's own rule (`synccp.sparsity.algorithms.policy_update_steps`), by arithmetic per
    phase, so the time taken grows with the number of updates, not of steps."""
    sparsity = spec.sparsity_spec(steps_per_epoch=clock.steps_per_epoch,
                                  total_steps=clock.total_steps)
    start, end = sparsity.ramp
    return policy_update_steps(sparsity.policy, start_step=start, end_step=end,
                               update_every=sparsity.update_every,
                               steps_per_epoch=clock.steps_per_epoch,
                               total_steps=clock.total_steps,
                               regrow_end_step=sparsity.regrow_window()[1])


def schedule_timeline(
    spec: RunSpec, clock: Clock, layers: dict[str, tuple[int, ...]]
) -> tuple[list[Interval], list[int]]:
    """Intervals from the density schedule (the run's `SparsitySpec.densities`); `layers` maps
    prunable weight names to shapes. Densities change only inside the ramp, so the intervals are
    those of the ramp updates."""
    sparsity = spec.sparsity_spec(steps_per_epoch=clock.steps_per_epoch,
                                  total_steps=clock.total_steps)
    _, end = sparsity.ramp
    updates = update_steps(spec, clock)
    fitting = [name for name, shape in layers.items() if sparsity.pattern.fits(shape)]
    intervals: list[Interval] = []
    for first in [0] + [u for u in updates if u < clock.total_steps and u <= end]:
        pair = sparsity.densities(first)
        branches = zip(("online", "second"), pair, strict=True)
        densities = {b: {name: d for name in fitting} for b, d in branches}
        if intervals and intervals[-1].densities == densities:
            continue
        if intervals:
            intervals[-1] = Interval(intervals[-1].start, first, intervals[-1].densities)
        intervals.append(Interval(first, clock.total_steps, densities))
    return intervals, updates


def interval_at(intervals: list[Interval], step_index: int) -> Interval:
    """The interval holding 0-based optimizer step `step_index`."""
    for interval in intervals:
        if interval.start <= step_index < interval.end:
            return interval
    return intervals[-1]


def total_density(densities: dict[str, float], layers: dict[str, tuple[int, ...]]) -> float:
    """Weight-count-weighted density over `layers` (missing layers dense)."""
    total = sum(math.prod(shape) for shape in layers.values())
    kept = sum(densities.get(name, 1.0) * math.prod(shape) for name, shape in layers.items())
    return kept / total if total else 1.0
