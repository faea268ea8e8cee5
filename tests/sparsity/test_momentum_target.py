"""SyncCP with a momentum target (BYOL, MoCo-v2): M_online ⊆ M_second after every update, Δ = 0
gives identical masks, and the target's extra entries M_second \\ M_online keep live values for
the whole run whatever τ is (DESIGN.md §1; issue 11 §1)."""

import math

import pytest
import torch

from synccp.models.ema import cosine_tau


def _pairs(run):
    masks = run.sparsifier.masks()
    return {key.split("/", 1)[1]: (mask, masks["second/" + key.split("/", 1)[1]])
            for key, mask in masks.items() if key.startswith("online/")}


@pytest.mark.parametrize("gap", [0.0, 0.1, 0.25])
@pytest.mark.parametrize("granularity", ["unstructured", "nm", "block", "channel"])
@pytest.mark.parametrize("allocation", ["global", "erk"])
def test_target_mask_contains_online_mask_at_every_update(make_run, gap, granularity, allocation):
    run = make_run(algorithm="synccp", momentum=True, density_gap=gap, granularity=granularity,
                   allocation=allocation, score_ema=0.5, update_every=1, ramp_end_step=10,
                   total_steps=12)
    run.sparsifier.prepare_()
    for step in range(0, 13):
        if step:
            run.step(step)
        for name, (online, second) in _pairs(run).items():
            assert bool((online <= second).all()), (
                f"step {step}: {name} M_online not inside M_second")
            if gap == 0.0:
                assert torch.equal(online, second), f"step {step}: Δ = 0 but {name} masks differ"


def test_target_extra_entries_are_chosen_by_the_target_scores(make_run):
    """The extras of M_second are the largest |ξ| among the target's previous entries outside
    M_online."""
    run = make_run(algorithm="synccp", momentum=True, density_gap=0.25, allocation="uniform",
                   update_every=1, ramp_end_step=6, total_steps=8)
    run.sparsifier.prepare_()
    run.run(1, 5)
    before = _pairs(run)
    target = {name: p.detach().clone() for name, p in run.target.named_parameters()}
    run.step(6)  # the last update of the ramp
    for name, (online, second) in _pairs(run).items():
        extra = second & ~online
        candidates = before[name][1] & ~online
        if extra.sum() == 0 or extra.sum() == candidates.sum():
            continue
        # scores are read after the step's EMA of the previous step, before this step's EMA:
        # compare the ordering loosely: the kept extras outrank the dropped candidates on average
        kept = target[name].abs()[extra].mean()
        dropped = target[name].abs()[candidates & ~extra].mean()
        assert kept > dropped, name


def _extra_magnitude(run) -> float:
    total, count = 0.0, 0
    target = dict(run.target.named_parameters())
    for name, (online, second) in _pairs(run).items():
        extra = second & ~online
        total += float(target[name].detach().abs()[extra].sum())
        count += int(extra.sum())
    assert count > 0
    return total / count


def test_target_extras_survive_a_long_tau_to_one_schedule(make_run):
    """3,000 steps with solo-learn's τ 0.99 → 1 after a ramp that ends at step 100: without the
    shadow the extras would shrink by ∏τ ≈ 1e-6; with it they keep ≥ 80% of their end-of-ramp
    mean |ξ| (measured: about 100%, ξ there converges to the pruned weights' last values)."""
    total = 3000
    run = make_run(algorithm="synccp", momentum=True, density_gap=0.2, update_every=10,
                   ramp_start_step=10, ramp_end_step=100, total_steps=total, steps_per_epoch=100)
    run.sparsifier.prepare_()
    for step in range(1, 101):
        run.tau = cosine_tau(step - 1, total, base=0.99, final=1.0)
        run.step(step)
    at_ramp_end = _extra_magnitude(run)
    decay = 1.0
    for step in range(101, total + 1):
        run.tau = cosine_tau(step - 1, total, base=0.99, final=1.0)
        decay *= run.tau
        run.step(step)
    assert decay < 1e-4  # what the extras would have kept with θ = 0 there and no shadow
    share = _extra_magnitude(run) / at_ramp_end
    assert share >= 0.8, f"extras kept {share:.3f} of their end-of-ramp magnitude"
    for name, (online, second) in _pairs(run).items():  # still exactly zero outside M_second
        assert not dict(run.target.named_parameters())[name].detach()[~second].any(), name
        assert not dict(run.model.named_parameters())[name].detach()[~online].any(), name


def test_target_extras_converge_to_the_pruned_weights_last_online_values(make_run):
    run = make_run(algorithm="synccp", momentum=True, density_gap=0.25, update_every=2,
                   ramp_end_step=8, total_steps=400)
    run.sparsifier.prepare_()
    run.run(1, 8)
    shadow = run.sparsifier.state_dict()["shadow"]
    for name, (online, second) in _pairs(run).items():
        extra = second & ~online
        # zero outside the extras
        assert torch.equal(shadow[name] != 0, extra & (shadow[name] != 0))
        assert bool((shadow[name][extra] != 0).any()), name  # and live inside
    run.tau = 0.9
    run.run(9, 400)  # masks frozen: ξ on the extras → the shadow (geometric convergence)
    target = dict(run.target.named_parameters())
    for name, (online, second) in _pairs(run).items():
        extra = second & ~online
        assert torch.allclose(target[name].detach()[extra], shadow[name][extra], atol=1e-5), name


def test_shadow_round_trips_through_the_state_dict(make_run):
    run = make_run(algorithm="synccp", momentum=True, density_gap=0.25)
    run.sparsifier.prepare_()
    run.run(1, 5)
    state = run.sparsifier.state_dict()
    other = make_run(algorithm="synccp", momentum=True, density_gap=0.25)
    other.sparsifier.load_state_dict(state)
    for name, value in state["shadow"].items():
        assert torch.equal(other.sparsifier.state_dict()["shadow"][name], value)
    assert math.isclose(sum(float(v.abs().sum()) for v in state["shadow"].values()),
                        sum(float(v.abs().sum())
                            for v in other.sparsifier.state_dict()["shadow"].values()))
