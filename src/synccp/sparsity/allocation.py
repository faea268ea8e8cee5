"""Budget allocation across layers: one global threshold, uniform, or ERK densities.

All functions take only layers that fit the granularity (unfit layers are dense and outside the
budget). Achieved densities are within one unit (element, group, block or filter) of the target
per layer (uniform, ERK) and within half of the largest unit in total (every allocation), by
largest-remainder rounding. A pattern may override the allocation (`Pattern.allocation_for`:
N:M always uses uniform per-layer fractions of N:M groups).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from synccp.sparsity.granularity import Pattern
from synccp.sparsity.topk import keep_top

ALLOCATIONS = ("global", "uniform", "erk")
Shapes = dict[str, tuple[int, ...]]


def uniform_densities(shapes: Shapes, density: float) -> dict[str, float]:
    """The same density for every layer."""
    return {name: float(density) for name in shapes}


def erk_densities(shapes: Shapes, density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel layer densities with RigL's dense-layer fallback.

    Evci et al., "Rigging the Lottery" (ICML 2020), §3: Erdős–Rényi-Kernel scales a sparse conv
    layer's density with (n^{l−1} + n^l + w^l + h^l)/(n^{l−1} n^l w^l h^l), i.e.
    density_l = ε · Σdims_l / numel_l, with ε solved so that Σ density_l · numel_l = density · Σ
    numel_l; layers whose density would exceed 1 are made dense and ε is solved again for the rest
    (RigL's dense-layer fallback).
    """
    numel = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: sum(shape) / numel[name] for name, shape in shapes.items()}
    budget = density * sum(numel.values())
    dense: set[str] = set()
    scale = 0.0
    while True:
        sparse = [name for name in shapes if name not in dense]
        divisor = sum(raw[name] * numel[name] for name in sparse)
        if not sparse or divisor == 0:
            break
        scale = (budget - sum(numel[name] for name in dense)) / divisor
        over = {name for name in sparse if scale * raw[name] > 1.0}
        if not over:
            break
        dense |= over
    return {name: 1.0 if name in dense else max(0.0, scale * raw[name]) for name in shapes}


def layer_densities(shapes: Shapes, density: float, allocation: str) -> dict[str, float]:
    """Per-layer target densities for the shape-only allocations (uniform, erk)."""
    if allocation == "uniform":
        return uniform_densities(shapes, density)
    if allocation == "erk":
        return erk_densities(shapes, density)
    raise ValueError(f"sparsity.allocation must be uniform or erk here, got {allocation!r}")


def apportion(ideal: dict[str, float], steps: dict[str, int], limits: dict[str, int],
              surplus: float) -> dict[str, int]:
    """Round real unit counts to integers, each to floor or floor + 1 (largest remainder first).

    `steps[name]` is the number of elements one unit adds; `surplus` is the number of elements the
    floors leave unassigned. Units are added while doing so brings the total closer to the target.
    """
    counts = {name: min(math.floor(value), limits[name]) for name, value in ideal.items()}
    remaining = surplus
    by_remainder = sorted(ideal, key=lambda name: counts[name] - ideal[name])
    for name in by_remainder:
        if (counts[name] < limits[name] and remaining >= steps[name] / 2
                and ideal[name] > counts[name]):
            counts[name] += 1
            remaining -= steps[name]
    return counts


def unit_counts(shapes: Shapes, density: float, *, allocation: str,
                pattern: Pattern) -> dict[str, int]:
    """Kept units per layer for uniform/ERK budgets (N:M: dense groups), total rounded jointly."""
    densities = layer_densities(shapes, density, pattern.allocation_for(allocation))
    ideal = {name: pattern.ideal_units(shape, densities[name]) for name, shape in shapes.items()}
    budgets = {name: pattern.unit_budget(shape) for name, shape in shapes.items()}
    floors = sum(base + math.floor(ideal[name]) * step for name, (base, step) in budgets.items())
    target = sum(densities[name] * math.prod(shape) for name, shape in shapes.items())
    return apportion(ideal, {name: step for name, (_, step) in budgets.items()},
                     {name: pattern.num_units(shape) for name, shape in shapes.items()},
                     target - floors)


def _global_unit_masks(units: dict[str, Tensor], sizes: dict[str, int],
                       budget: float) -> dict[str, Tensor]:
    """Keep the highest-scoring units of all layers together until `budget` elements are kept."""
    flat = torch.cat(list(units.values()))  # (ΣU,)
    if len(set(sizes.values())) <= 1:
        size = next(iter(sizes.values()), 1)
        keep = keep_top(flat, round(budget / size))
    else:  # units of different sizes (filters): greedy by score, nearest to the budget
        size = torch.cat([torch.full_like(u, sizes[name], dtype=torch.float64)
                          for name, u in units.items()])
        order = flat.argsort(descending=True, stable=True)
        ends = size[order].cumsum(0)  # elements kept when keeping the first i units
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[order] = ends - size[order] / 2 <= budget
    return dict(zip(units, keep.split([u.numel() for u in units.values()]), strict=True))


def _lift(values: Tensor, allowed: Tensor | None, forced: Tensor | None) -> Tensor:
    """−inf where not `allowed`, +inf where `forced` (same shapes)."""
    if allowed is not None:
        values = torch.where(allowed, values, -math.inf)
    if forced is not None:
        values = torch.where(forced, math.inf, values)
    return values


def allocate_masks(scores: dict[str, Tensor], density: float, *, allocation: str,
                   pattern: Pattern, allowed: dict[str, Tensor] | None = None,
                   forced: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Masks keeping the top `density` of all layers' `scores` together, per `allocation`.

    `global`: one threshold over every layer's unit scores (mean score for multi-element units, so
    they compare across layers); `uniform`/`erk`: per-layer budgets (`unit_counts`). Optional
    `allowed` masks restrict the result to a subset (masks that only shrink) and `forced` masks
    must be kept (nested masks); both must follow `pattern`. The pattern may override the
    allocation (`Pattern.allocation_for`: N:M is always uniform).
    """
    if allocation not in ALLOCATIONS:
        raise ValueError(f"sparsity.allocation must be one of {', '.join(ALLOCATIONS)}, "
                         f"got {allocation!r}")
    if not scores:
        return {}
    allowed, forced = allowed or {}, forced or {}
    if density >= 1.0:
        return {name: allowed[name].clone() if name in allowed
                else torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
    shapes = {name: tuple(s.shape) for name, s in scores.items()}
    units = {name: _lift(pattern.unit_scores(s),
                         None if name not in allowed else pattern.unit_all(allowed[name]),
                         None if name not in forced else pattern.unit_all(forced[name]))
             for name, s in scores.items()}  # name → (U,)
    if pattern.allocation_for(allocation) == "global":
        sizes = {name: pattern.unit_budget(shape)[1] for name, shape in shapes.items()}
        budget = density * sum(math.prod(shape) for shape in shapes.values())
        kept = _global_unit_masks(units, sizes, budget)
    else:
        counts = unit_counts(shapes, density, allocation=allocation, pattern=pattern)
        kept = {name: keep_top(u, counts[name]) for name, u in units.items()}
    masks = {}
    for name, score in scores.items():
        if pattern.entry_choice:  # N:M picks entries inside groups: lift them too
            score = _lift(score, allowed.get(name), forced.get(name))
        mask = pattern.mask_from_units(score, kept[name])
        if name in allowed:  # a rounding surplus never revives a unit
            mask = mask & allowed[name]
        masks[name] = mask | forced[name] if name in forced else mask
    return masks
