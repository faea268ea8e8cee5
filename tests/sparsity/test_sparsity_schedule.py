"""Schedules: Zhu & Gupta cubic ramp, RigL cosine drop fraction, update steps, branch densities."""

import math
from itertools import pairwise

import pytest

from synccp.sparsity.schedule import (
    branch_densities,
    constant_density,
    cosine_drop_fraction,
    cubic_density,
    is_update_step,
    last_update_step,
)
from synccp.sparsity.spec import SparsitySpec

RAMP = dict(initial=0.9, final=0.1, start=10, end=50)


def test_cubic_endpoints_and_formula():
    assert cubic_density(0, **RAMP) == 0.9
    assert cubic_density(10, **RAMP) == 0.9
    assert cubic_density(50, **RAMP) == pytest.approx(0.1)
    assert cubic_density(80, **RAMP) == pytest.approx(0.1)
    # φ = 0.5: d_f + (d_i − d_f)(1 − φ)^3
    assert cubic_density(30, **RAMP) == pytest.approx(0.1 + 0.8 * 0.125)


def test_cubic_is_monotone_and_front_loaded():
    values = [cubic_density(t, **RAMP) for t in range(0, 61)]
    assert all(a >= b for a, b in pairwise(values))
    # Zhu & Gupta prune fastest early: the first half of the ramp removes 7/8 of the gap.
    assert (0.9 - values[30]) / 0.8 == pytest.approx(7 / 8)


def test_cubic_zero_length_ramp_jumps_at_end():
    assert cubic_density(4, initial=1.0, final=0.2, start=5, end=5) == 1.0
    assert cubic_density(5, initial=1.0, final=0.2, start=5, end=5) == 0.2


def test_constant_and_cosine_drop_fraction():
    assert constant_density(123, density=0.3) == 0.3
    assert cosine_drop_fraction(0, initial=0.3, end=100) == pytest.approx(0.3)
    assert cosine_drop_fraction(50, initial=0.3, end=100) == pytest.approx(0.15)
    assert (cosine_drop_fraction(25, initial=0.3, end=100)
            == pytest.approx(0.15 * (1 + math.cos(math.pi / 4))))
    assert cosine_drop_fraction(100, initial=0.3, end=100) == 0.0
    assert cosine_drop_fraction(150, initial=0.3, end=100) == 0.0


def test_update_steps_hit_the_end_step():
    steps = [t for t in range(0, 40) if is_update_step(t, start=3, end=20, every=5)]
    assert steps == [3, 8, 13, 18, 20]
    assert last_update_step(2, start=3, end=20, every=5) is None
    assert last_update_step(12, start=3, end=20, every=5) == 8
    assert last_update_step(19, start=3, end=20, every=5) == 18
    assert last_update_step(33, start=3, end=20, every=5) == 20
    with pytest.raises(ValueError, match="update_every"):  # the one place that checks it
        SparsitySpec(update_every=0, total_steps=10)


COMMON = dict(density=0.2, initial_density=0.8, density_gap=0.3, start_step=10, end_step=50,
              sparse_branch="second", granularity="unstructured", n=2, m=4)


@pytest.mark.parametrize("step", [0, 10, 30, 50, 70])
def test_branch_densities_per_algorithm(step):
    ramp = cubic_density(step, initial=0.8, final=0.2, start=10, end=50)
    assert branch_densities(step, algorithm="dense", **COMMON) == (1.0, 1.0)
    assert branch_densities(step, algorithm="static", **COMMON) == (0.2, 0.2)
    assert branch_densities(step, algorithm="rigl", **COMMON) == (0.2, 0.2)
    assert branch_densities(step, algorithm="sdclr", **COMMON) == (1.0, 0.2)
    online_pruned = {**COMMON, "sparse_branch": "online"}
    assert branch_densities(step, algorithm="sdclr", **online_pruned) == (0.2, 1.0)
    for algorithm in ("gmp", "granet"):
        assert branch_densities(step, algorithm=algorithm, **COMMON) == pytest.approx((ramp, ramp))
    assert (branch_densities(step, algorithm="synccp", **COMMON)
            == pytest.approx((ramp, min(1.0, ramp + 0.3))))


def test_branch_densities_hold_between_updates():
    kwargs = dict(algorithm="synccp", update_every=8, **COMMON)
    at_update = branch_densities(18, **kwargs)  # 18 = 10 + 8
    for step in range(18, 26):
        assert branch_densities(step, **kwargs) == at_update
    assert branch_densities(26, **kwargs) != at_update
    assert branch_densities(5, **kwargs) == (0.8, 1.0)
    assert branch_densities(49, **kwargs) == branch_densities(42, **kwargs)
    assert branch_densities(50, **kwargs) == pytest.approx((0.2, 0.5))


def test_nm_final_density_is_n_over_m():
    kwargs = {**COMMON, "granularity": "nm", "n": 1, "m": 4, "initial_density": 1.0}
    assert branch_densities(50, algorithm="synccp", **kwargs) == pytest.approx((0.25, 0.55))
    assert branch_densities(0, algorithm="gmp", **kwargs) == (1.0, 1.0)
    assert branch_densities(0, algorithm="rigl", **kwargs) == (0.25, 0.25)
    # an initial density below n/m is raised to n/m (N:M cannot be sparser)
    low = {**kwargs, "n": 2, "initial_density": 0.3}
    assert branch_densities(0, algorithm="gmp", **low) == (0.5, 0.5)


def test_branch_densities_reject_unknown_algorithm():
    with pytest.raises(ValueError, match="sparsity.algorithm.*'lottery'"):
        branch_densities(0, algorithm="lottery", **COMMON)
