"""GraNet and RigL on their references' schedules (issue 11 §3, §4).

GraNet (VITA-Group/GraNet, `CIFAR/sparselearning/core.py` `Masking.step`): gradual magnitude
pruning over the ramp, prune-and-regrow every ΔT steps from the start of pruning to the end of
training, death rate cosine 0.5 → 0.005 over all steps, ⌈rate × active⌉ per layer. RigL (Evci et
al. 2020): updates every ΔT from the start of training to 75% of it, α = 0.3 cosine to 0."""

import math

import pytest
import torch

from synccp.sparsity.algorithms import is_policy_update, policy_update_steps, regrow_masks
from synccp.sparsity.granularity import pattern_for
from synccp.sparsity.registry import POLICIES
from synccp.sparsity.schedule import cosine_drop_fraction


def test_granet_death_rate_is_the_reference_cosine():
    total = 1000
    for step in (0, 1, 250, 500, 999):  # CosineDecay(0.5, T_max=total, eta_min=0.005)
        expected = 0.005 + (0.5 - 0.005) * (1 + math.cos(math.pi * step / total)) / 2
        assert (cosine_drop_fraction(step, initial=0.5, final=0.005, end=total)
                == pytest.approx(expected))
    assert cosine_drop_fraction(total, initial=0.5, final=0.005, end=total) == pytest.approx(0.005)
    assert cosine_drop_fraction(total + 1, initial=0.5, final=0.005, end=total) == 0.0


def test_granet_rounds_counts_up_and_rigl_down():
    torch.manual_seed(0)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask.view(-1)[:7] = True  # 7 active
    magnitude, gradient = torch.rand(8, 8), torch.rand(8, 8) * ~mask  # growth goes elsewhere
    pattern = pattern_for("unstructured")
    _, grown_up = regrow_masks({"w": mask}, {"w": magnitude}, {"w": gradient}, fraction=0.1,
                               pattern=pattern, ceil=True)
    _, grown_down = regrow_masks({"w": mask}, {"w": magnitude}, {"w": gradient}, fraction=0.1,
                                 pattern=pattern, ceil=False)
    assert int(grown_up["w"].sum()) == 1 and int(grown_down["w"].sum()) == 0  # ⌈0.7⌉ = 1, ⌊0.7⌋ = 0
    new, _ = regrow_masks({"w": mask}, {"w": magnitude}, {"w": gradient}, fraction=0.1,
                          pattern=pattern, ceil=True)
    assert not torch.equal(new["w"], mask) and int(new["w"].sum()) == 7  # one swapped, count kept


def test_granet_keeps_pruning_and_regrowing_after_the_ramp(make_run):
    run = make_run(algorithm="granet", density=0.25, update_every=2, ramp_start_step=1,
                   ramp_end_step=9, total_steps=30, drop_fraction=None)
    run.sparsifier.prepare_()
    run.run(1, 30)
    after = {step: r for step, r in run.records.items() if step > 9}
    assert sorted(after) == list(range(11, 30, 2))  # every ΔT to the end of training
    assert all(r["density"]["online"]["total"] == pytest.approx(0.25, abs=2e-3)
               for r in after.values())
    moved = [r["oscillation"]["online"]["total"]["flip_rate"] for r in after.values()]
    assert max(moved) > 0.0  # the mask still oscillates after the ramp (GMP's would not)


def test_rigl_window_is_its_own(make_run):
    """A grid-wide ramp start does not move RigL: updates every ΔT from step 0 to 75% of
    training."""
    run = make_run(algorithm="rigl", density=0.3, update_every=4, ramp_start_step=10,
                   ramp_end_step=20, total_steps=40, drop_fraction=None)
    run.sparsifier.prepare_()
    run.run(1, 40)
    assert sorted(run.records) == [4, 8, 12, 16, 20, 24, 28]  # T_end = 0.75 × 40 = 30
    assert run.sparsifier.drop_fraction == 0.3


@pytest.mark.parametrize("algorithm", sorted(POLICIES))
@pytest.mark.parametrize("start, end, every, regrow_end", [(0, 0, 1, 0), (3, 17, 4, 40),
                                                            (5, 5, 3, 30), (0, 40, 7, 29),
                                                            (12, 30, 5, 40)])
def test_update_steps_by_arithmetic_equal_the_step_rule(algorithm, start, end, every, regrow_end):
    policy, total, per_epoch = POLICIES[algorithm], 40, 6
    kwargs = dict(start_step=start, end_step=end, update_every=every, steps_per_epoch=per_epoch,
                  total_steps=total, regrow_end_step=regrow_end)
    brute = [step for step in range(1, total + 1) if is_policy_update(policy, step, **kwargs)]
    assert policy_update_steps(policy, **kwargs) == brute
