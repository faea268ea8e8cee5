"""The Sparsifier end to end on a tiny conv + linear net, stepped in train/loop.py's order."""

import copy
import json
import math

import pytest
import torch

from synccp.sparsity.granularity import pattern_for
from synccp.sparsity.pattern_report import pattern_report
from synccp.sparsity.schedule import branch_densities

ALGORITHMS = ["dense", "static", "gmp", "sdclr", "rigl", "granet", "synccp"]
GRANULARITIES = ["unstructured", "nm", "block", "channel"]


def _masks(run):
    return {k: v.clone() for k, v in run.sparsifier.masks().items()}


def _zero_outside(run):
    """Every pruned weight is exactly zero: θ outside the union (shared) / M_A, ξ outside M_B."""
    masks = run.sparsifier.masks()
    params = dict(run.model.named_parameters())
    target = dict(run.target.named_parameters()) if run.target is not None else None
    for key, mask in masks.items():
        branch, name = key.split("/", 1)
        if target is None:
            union = masks[f"online/{name}"] | masks[f"second/{name}"]
            assert not params[name].detach()[~union].any(), f"{name} nonzero outside the union"
        elif branch == "online":
            assert not params[name].detach()[~mask].any(), f"{name} nonzero outside M_A"
        elif run.sparsifier.policy.zero_pruned:
            assert not target[name][~mask].any(), f"target {name} nonzero outside M_B"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("momentum", [False, True], ids=["shared", "momentum"])
def test_every_algorithm_and_granularity_trains(make_run, algorithm, granularity, momentum):
    run = make_run(algorithm=algorithm, granularity=granularity, momentum=momentum, score_ema=0.5)
    record = run.sparsifier.prepare_()
    json.dumps(record)
    run.run(1, 10)
    assert all(math.isfinite(loss) for loss in run.losses)
    _zero_outside(run)
    summary = run.sparsifier.summary()
    online, second = branch_densities(10, algorithm=algorithm, density=0.25, initial_density=1.0,
                                      density_gap=0.25, start_step=1, end_step=9,
                                      sparse_branch="second", granularity=granularity, n=2, m=4)
    largest_unit = {"unstructured": 1, "nm": 2, "block": 16, "channel": 72}[granularity]
    masks = run.sparsifier.masks()
    numel = sum(p.numel() for name, p in run.model.named_parameters() if f"online/{name}" in masks)
    assert abs(summary["online"]["total"] - online) * numel <= largest_unit
    assert abs(summary["second"]["total"] - second) * numel <= largest_unit
    # N:M second branch: dense groups left
    check = "hybrid_valid" if granularity == "nm" else "valid"
    for key, mask in masks.items():
        assert pattern_report(key, mask, pattern_for(granularity, block=(4, 4)))[check], key


@pytest.mark.parametrize("optimizer", ["sgd", "lars"])
@pytest.mark.parametrize("algorithm", ["gmp", "synccp", "rigl", "granet", "static"])
@pytest.mark.parametrize("momentum", [False, True], ids=["shared", "momentum"])
def test_pruned_weights_stay_exactly_zero(make_run, optimizer, algorithm, momentum):
    run = make_run(algorithm=algorithm, optimizer=optimizer, momentum=momentum, weight_decay=0.05)
    run.sparsifier.prepare_()
    for step in range(1, 13):
        run.step(step)
        _zero_outside(run)


def test_nm_ramp_ends_with_exactly_n_per_group(make_run):
    run = make_run(granularity="nm", n=1, m=4, density_gap=0.0)
    run.sparsifier.prepare_()
    run.run(1, 10)
    for key, mask in run.sparsifier.masks().items():
        groups = mask.movedim(1, -1).reshape(-1, 4).sum(1)
        assert bool((groups == 1).all()), key


@pytest.mark.parametrize("algorithm", ["synccp", "gmp"])
@pytest.mark.parametrize("momentum", [False, True], ids=["shared", "momentum"])
def test_masks_only_shrink(make_run, algorithm, momentum):
    run = make_run(algorithm=algorithm, momentum=momentum, score_ema=0.9)
    run.sparsifier.prepare_()
    previous = _masks(run)
    for step in range(1, 12):
        run.step(step)
        current = _masks(run)
        for key in current:
            assert bool((current[key] <= previous[key]).all()), (
                f"{key} revived a weight at step {step}")
        previous = current
    assert sum(r["oscillation"]["online"]["total"]["flip_rate"] > 0
               for r in run.records.values()) >= 3


def test_shared_synccp_nests_masks_and_branch_weights(make_run):
    run = make_run(algorithm="synccp", density_gap=0.3)
    run.sparsifier.prepare_()
    assert run.sparsifier.branch_weights("online") is None  # dense before the ramp
    run.run(1, 6)
    masks = run.sparsifier.masks()
    params = dict(run.model.named_parameters())
    online = run.sparsifier.branch_weights("online")
    assert run.sparsifier.branch_weights("second") is None  # M_B is the union: plain θ
    assert set(online) == {name for name in params if f"online/{name}" in masks}
    for name, weight in online.items():
        a, b = masks[f"online/{name}"], masks[f"second/{name}"]
        assert bool((a <= b).all())
        assert torch.equal(weight, params[name].detach() * a)
        assert params[name].detach()[b & ~a].ne(0).any()  # zeroed only where both masks are off
    grad_fn = online[next(iter(online))].grad_fn
    assert grad_fn is not None  # θ⊙M_A backpropagates into θ


def test_sdclr_branches(make_run):
    run = make_run(algorithm="sdclr", density=0.3)
    run.sparsifier.prepare_()
    assert run.sparsifier.summary()["online"]["total"] == 1.0
    assert run.sparsifier.summary()["second"]["total"] == pytest.approx(0.3, abs=1 / 700)
    assert run.sparsifier.branch_weights("online") is None
    assert run.sparsifier.branch_weights("second")
    run.run(1, 12)
    assert sorted(run.records) == [4, 8, 12]  # re-pruned every epoch (steps_per_epoch = 4)
    flipped = make_run(algorithm="sdclr", density=0.3, sparse_branch="online")
    flipped.sparsifier.prepare_()
    assert flipped.sparsifier.summary()["second"]["total"] == 1.0


def test_sdclr_sparse_target_is_re_pruned(make_run):
    """The EMA target is zero where pruned; re-pruning scores those entries by θ (an estimate of
    the unmasked EMA), so the target mask can change between epochs."""
    run = make_run(algorithm="sdclr", density=0.3, momentum=True)
    run.sparsifier.prepare_()
    run.run(1, 12)
    assert sorted(run.records) == [4, 8, 12]
    assert any(r["oscillation"]["second"]["total"]["flip_rate"] > 0 for r in run.records.values())
    assert all(r["density"]["online"]["total"] == 1.0 for r in run.records.values())
    _zero_outside(run)


def test_scores_update_once_per_step(make_run):
    run = make_run(score_ema=0.5, ramp_start_step=100, ramp_end_step=100, total_steps=100)
    run.sparsifier.prepare_()
    run.step(1)
    scores = {k: v.clone() for k, v in run.sparsifier.state_dict()["scores"]["online"].items()}
    assert run.sparsifier.update_(1, run.optimizer) is None  # same step again: no second EMA update
    for key, value in run.sparsifier.state_dict()["scores"]["online"].items():
        assert torch.equal(value, scores[key])


def test_rigl_constant_density_and_zero_initialised_growth(make_run):
    run = make_run(algorithm="rigl", density=0.3, drop_fraction=0.5, ramp_end_step=11)
    run.sparsifier.prepare_()
    params = dict(run.model.named_parameters())
    densities = set()
    changed = 0
    for step in range(1, 11):
        before = _masks(run)
        run.step(step)
        after = _masks(run)
        for key in after:
            if not key.startswith("online/"):
                continue
            name = key.split("/", 1)[1]
            grown = after[key] & ~before[key]
            if step in run.records and grown.any():
                changed += 1
                assert not params[name].detach()[grown].any()  # starts at exactly zero
                buffer = run.optimizer.state[params[name]]["momentum_buffer"]
                assert not buffer[grown].any()  # with zero momentum
            assert int(after[key].sum()) == int(before[key].sum())
        if step in run.records:
            densities.add(round(run.records[step]["density"]["online"]["total"], 9))
    assert len(densities) == 1 and changed > 0


def test_granet_prunes_and_regrows(make_run):
    run = make_run(algorithm="granet", drop_fraction=0.5)
    run.sparsifier.prepare_()
    revived = 0
    previous = _masks(run)
    for step in range(1, 10):
        run.step(step)
        current = _masks(run)
        revived += sum(int((current[k] & ~previous[k]).sum()) for k in current)
        previous = current
    assert revived > 0
    assert run.records[9]["density"]["online"]["total"] == pytest.approx(0.25, abs=2e-3)


def test_rigl_needs_captured_gradients(make_run):
    run = make_run(algorithm="rigl")
    run.sparsifier.prepare_()
    with pytest.raises(RuntimeError, match="capture_"):
        run.sparsifier.update_(2, run.optimizer)  # RigL: every ΔT = 2 steps from step 0


def test_dense_costs_nothing(make_run):
    run = make_run(algorithm="dense", score_ema=0.9)
    assert run.sparsifier.prepare_()["density"]["online"]["total"] == 1.0
    run.run(1, 5)
    assert run.records == {}
    assert run.sparsifier.branch_weights("online") is None
    assert run.sparsifier.branch_weights("second") is None
    assert run.sparsifier.state_dict()["scores"] == {"online": {}, "second": {}}  # no EMA kept


def test_unfit_layer_left_dense_and_reported(make_run):
    run = make_run(granularity="block", block=(16, 4))
    run.sparsifier.prepare_()
    run.run(1, 10)
    summary = run.sparsifier.summary()
    unfit = {entry["name"] for entry in summary["unfit_layers"]}
    assert unfit == {"2.weight", "9.weight"}  # C_out = 8 is not divisible by b_out = 16
    assert summary["online"]["layers"]["2.weight"] == 1.0


def test_masks_export_format(make_run):
    run = make_run()
    run.sparsifier.prepare_()
    masks = run.sparsifier.masks()
    names = ("2.weight", "5.weight", "9.weight")
    assert sorted(masks) == sorted(f"{branch}/{name}" for branch in ("online", "second")
                                   for name in names)
    assert all(m.dtype == torch.bool and m.device.type == "cpu" and m.is_contiguous()
               for m in masks.values())


def _state(run):
    return copy.deepcopy({"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                          "target": None if run.target is None else run.target.state_dict(),
                          "sparsifier": run.sparsifier.state_dict()})


@pytest.mark.parametrize("config", [dict(algorithm="synccp", score_ema=0.7),
                                    dict(algorithm="synccp", score_ema=0.7, momentum=True),
                                    dict(algorithm="rigl", drop_fraction=0.5),
                                    dict(algorithm="granet", granularity="nm", score_ema=0.5)],
                         ids=["synccp-shared", "synccp-momentum", "rigl", "granet-nm"])
def test_resume_mid_ramp_equals_uninterrupted(make_run, config):
    whole = make_run(**config)
    whole.sparsifier.prepare_()
    whole.run(1, 5)
    saved = _state(whole)
    whole.run(6, 11)

    resumed = make_run(seed=1, **config)  # different init: everything must come from the state
    resumed.model.load_state_dict(saved["model"])
    if resumed.target is not None:
        resumed.target.load_state_dict(saved["target"])
    resumed.optimizer.load_state_dict(saved["optimizer"])
    resumed.sparsifier.load_state_dict(saved["sparsifier"])
    resumed.run(6, 11)

    assert resumed.losses == whole.losses[5:]
    for (name, a), (_, b) in zip(whole.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    for key, mask in whole.sparsifier.masks().items():
        assert torch.equal(mask, resumed.sparsifier.masks()[key]), key
    assert resumed.records.keys() == {s for s in whole.records if s > 5}
    assert all(resumed.records[s] == whole.records[s] for s in resumed.records)


def test_state_dict_round_trip(make_run):
    run = make_run(score_ema=0.5)
    run.sparsifier.prepare_()
    run.run(1, 4)
    state = run.sparsifier.state_dict()
    other = make_run(seed=3, score_ema=0.5)
    other.sparsifier.load_state_dict(state)
    assert other.sparsifier.summary() == run.sparsifier.summary()
    for key, value in other.sparsifier.state_dict()["scores"]["online"].items():
        assert torch.equal(value, state["scores"]["online"][key])
    with pytest.raises(ValueError, match="sparsity.algorithm"):
        make_run(algorithm="gmp").sparsifier.load_state_dict(state)


@pytest.mark.parametrize("override, message", [
    (dict(density=0.0), "sparsity.density"), (dict(density_gap=1.0), "sparsity.density_gap"),
    (dict(n=4, m=4), "sparsity.n"), (dict(algorithm="snip"), "sparsity.algorithm"),
    (dict(allocation="lamp"), "sparsity.allocation"),
    (dict(update_every=0), "sparsity.update_every"),
    (dict(ramp_start_step=5, ramp_end_step=3), "end_step=3"),
    (dict(sparse_branch="both"), "sparsity.sparse_branch"),
    (dict(score_ema=1.0), "sparsity.score_ema")])
def test_bad_arguments_name_the_field(make_run, override, message):
    with pytest.raises(ValueError, match=message):
        make_run(**override)


@pytest.mark.parametrize("momentum", [False, True], ids=["shared", "momentum"])
def test_construction_applies_the_initial_masks(make_run, momentum):
    run = make_run(algorithm="static", momentum=momentum)  # random ERK masks at step 0
    weights = dict(run.model.named_parameters())
    masks = run.sparsifier.masks()
    assert 0.2 < run.sparsifier.summary()["online"]["total"] < 0.3
    for key, mask in masks.items():
        if key.startswith("online/"):
            assert not weights[key.split("/", 1)[1]][~mask].any(), key
    assert run.sparsifier.prepare_() is run.sparsifier.prepare_()  # the step-0 record, kept
