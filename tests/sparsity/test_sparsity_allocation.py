"""Allocation: ERK by hand, achieved densities within one unit per layer and in total."""

import math

import pytest
import torch

from synccp.sparsity.allocation import allocate_masks, erk_densities, uniform_densities, unit_counts
from synccp.sparsity.granularity import pattern_for

SHAPES = {"a": (16, 8, 3, 3), "b": (32, 16, 1, 1), "c": (12, 32)}


def test_erk_matches_hand_computation_with_dense_fallback():
    # Σdims/numel: a = 30/1152, b = 50/512, c = 44/384. Target 0.5 of 2048 = 1024 weights.
    # First ε = 1024/(30 + 50 + 44) = 8.258 gives c: 8.258·44/384 = 0.946, b: 0.806, a: 0.215
    # → all < 1.
    densities = erk_densities(SHAPES, 0.5)
    eps = 1024 / (30 + 50 + 44)
    assert densities == pytest.approx({"a": eps * 30 / 1152, "b": eps * 50 / 512,
                                       "c": eps * 44 / 384})
    # At 0.56 (1146.88 weights) ε = 9.249 gives c 1.06 > 1: c is made dense, ε re-solved over a, b.
    densities = erk_densities(SHAPES, 0.56)
    eps = (0.56 * 2048 - 384) / (30 + 50)
    assert densities == pytest.approx({"a": eps * 30 / 1152, "b": eps * 50 / 512, "c": 1.0})
    assert sum(densities[k] * math.prod(s) for k, s in SHAPES.items()) == pytest.approx(0.56 * 2048)
    # At 0.6 the re-solved ε = 10.56 pushes b over 1 too (1.03): a alone takes the rest.
    densities = erk_densities(SHAPES, 0.6)
    assert densities == pytest.approx({"a": (0.6 * 2048 - 384 - 512) / 1152, "b": 1.0, "c": 1.0})


def test_erk_all_dense_at_density_one():
    assert erk_densities(SHAPES, 1.0) == {"a": 1.0, "b": 1.0, "c": 1.0}


def _scores(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=g) for name, shape in SHAPES.items()}


PATTERNS = [pattern_for("unstructured"), pattern_for("nm", n=2, m=4), pattern_for("nm", n=1, m=4),
            pattern_for("block", block=(4, 4)), pattern_for("channel")]


def _unit(pattern, shape):
    if pattern.granularity == "nm":
        return pattern.m - pattern.n
    return {"unstructured": 1, "block": 16,
            "channel": math.prod(shape) // shape[0]}[pattern.granularity]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.describe())
@pytest.mark.parametrize("allocation", ["global", "uniform", "erk"])
@pytest.mark.parametrize("density", [0.3, 0.55, 0.8])
def test_achieved_density_within_one_unit(pattern, allocation, density):
    if pattern.granularity == "nm":
        density = max(density, pattern.n / pattern.m)
    masks = allocate_masks(_scores(), density, allocation=allocation, pattern=pattern)
    kept = {name: int(mask.sum()) for name, mask in masks.items()}
    total = sum(math.prod(s) for s in SHAPES.values())
    largest = max(_unit(pattern, s) for s in SHAPES.values())
    assert abs(sum(kept.values()) - density * total) <= largest + 1e-6
    if allocation != "global" or pattern.granularity == "nm":  # per-layer targets exist
        effective = "uniform" if pattern.granularity == "nm" else allocation
        rule = uniform_densities if effective == "uniform" else erk_densities
        targets = rule(SHAPES, density)
        for name, shape in SHAPES.items():
            assert (abs(kept[name] - targets[name] * math.prod(shape))
                    <= _unit(pattern, shape) + 1e-6)


def test_global_threshold_is_one_threshold_over_layers():
    scores = _scores()
    masks = allocate_masks(scores, 0.3, allocation="global", pattern=pattern_for("unstructured"))
    kept = torch.cat([scores[k][masks[k]] for k in SHAPES])
    dropped = torch.cat([scores[k][~masks[k]] for k in SHAPES])
    assert kept.min() >= dropped.max()
    assert sum(int(m.sum()) for m in masks.values()) == round(0.3 * 2048)


def test_global_channel_budget_uses_filter_sizes():
    # layer "a" filters hold 72 weights, "b" 16, "c" 32: the budget counts weights, not filters
    scores = _scores(1)
    masks = allocate_masks(scores, 0.4, allocation="global", pattern=pattern_for("channel"))
    assert abs(sum(int(m.sum()) for m in masks.values()) - 0.4 * 2048) <= 72 / 2
    means = {k: s.reshape(s.shape[0], -1).mean(1) for k, s in scores.items()}
    kept = torch.cat([means[k][masks[k].reshape(masks[k].shape[0], -1).all(1)] for k in SHAPES])
    dropped = torch.cat([means[k][~masks[k].reshape(masks[k].shape[0], -1).any(1)] for k in SHAPES])
    assert kept.min() >= dropped.max()


def test_unit_counts_round_the_total_jointly():
    shapes = {f"l{i}": (1, 3) for i in range(4)}  # 4 layers of 3 weights at density 0.5: 6 weights
    counts = unit_counts(shapes, 0.5, allocation="uniform", pattern=pattern_for("unstructured"))
    assert sorted(counts.values()) == [1, 1, 2, 2]  # per layer 1.5 → 1 or 2; total exactly 6


def test_allowed_and_forced_masks():
    scores = _scores()
    pattern = pattern_for("unstructured")
    allowed = allocate_masks(scores, 0.6, allocation="global", pattern=pattern)
    inner = allocate_masks({k: 1 - s for k, s in scores.items()}, 0.1, allocation="global",
                           pattern=pattern)
    inner = {k: inner[k] & allowed[k] for k in SHAPES}
    masks = allocate_masks(scores, 0.3, allocation="uniform", pattern=pattern, allowed=allowed,
                           forced=inner)
    for k in SHAPES:
        assert bool((masks[k] <= allowed[k]).all()) and bool((inner[k] <= masks[k]).all())


def test_unknown_allocation_names_the_field():
    with pytest.raises(ValueError, match="sparsity.allocation.*'lamp'"):
        allocate_masks(_scores(), 0.5, allocation="lamp", pattern=pattern_for("unstructured"))
