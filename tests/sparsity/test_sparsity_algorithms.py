"""Drop-and-grow (RigL/GraNet) on single layers, and the policy table."""

import pytest
import torch

from synccp.sparsity.algorithms import drop_and_grow
from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.granularity import NM, Unstructured, pattern_for
from synccp.sparsity.registry import POLICIES, policy_for


def _mask(scores, density, pattern):
    return allocate_masks({"w": scores}, density, allocation="uniform", pattern=pattern)["w"]


def test_drop_and_grow_by_hand():
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    magnitude = torch.tensor([[0.1, 0.5, 0.9, 0.0, 0.0, 0.0]])
    gradient = torch.tensor([[0.0, 0.0, 0.0, 0.2, 0.7, 0.1]])
    new, grown = drop_and_grow(mask, magnitude, gradient, count=1, active=3,
                               pattern=Unstructured())
    assert new.tolist() == [[False, True, True, False, True, False]]
    assert grown.tolist() == [[False, False, False, False, True, False]]


def test_dropped_weight_can_be_grown_back():
    mask = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    magnitude = torch.tensor([0.1, 0.5, 0.0, 0.0])
    gradient = torch.tensor([9.0, 0.0, 0.2, 0.1])  # the dropped weight has the largest gradient
    new, grown = drop_and_grow(mask, magnitude, gradient, count=1, active=2,
                               pattern=Unstructured())
    assert new.tolist() == [True, True, False, False] and not grown.any()


def test_drop_and_grow_nm_keeps_n_per_group():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(8, 8, 3, 3, generator=g)
    pattern = NM(n=2, m=4)
    mask = _mask(scores, 0.5, pattern)
    active = int(pattern.active_units(mask))
    new, grown = drop_and_grow(mask, scores * mask, torch.rand(8, 8, 3, 3, generator=g),
                               count=active // 3, active=active, pattern=pattern)
    groups = new.movedim(1, -1).reshape(-1, 4).sum(1)
    assert bool((groups == 2).all())
    assert int((new & ~mask).sum()) == int(grown.sum()) > 0


@pytest.mark.parametrize("pattern", [pattern_for("block", block=(2, 2)), pattern_for("channel")],
                         ids=str)
def test_drop_and_grow_structured_keeps_count(pattern):
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(8, 8, 3, 3, generator=g)
    mask = _mask(scores, 0.5, pattern)
    active = int(pattern.active_units(mask))
    new, grown = drop_and_grow(mask, scores * mask, torch.rand(8, 8, 3, 3, generator=g),
                               count=2, active=active, pattern=pattern)
    assert int(new.sum()) == int(mask.sum())
    assert int(pattern.active_units(new)) == active


def test_policies_compose_switches():
    assert policy_for("synccp").nested and not policy_for("synccp").regrow
    assert policy_for("rigl").regrow and not policy_for("rigl").reselect
    assert policy_for("gmp").shrink_only and policy_for("gmp").second == "same"
    assert policy_for("sdclr").cadence == "epoch"
    assert set(POLICIES) == {"dense", "static", "gmp", "sdclr", "rigl", "granet", "synccp"}
    with pytest.raises(ValueError, match="sparsity.algorithm.*'snip'"):
        policy_for("snip")


def test_the_rows_say_which_algorithms_ramp_and_regrow():
    assert {name for name, p in POLICIES.items() if p.has_ramp} == {"gmp", "granet", "synccp"}
    assert {name for name, p in POLICIES.items() if p.regrow is not None} == {"rigl", "granet"}
