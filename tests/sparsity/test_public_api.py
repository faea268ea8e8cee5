"""`synccp.Sparsifier` from a plain module in a user's loop: `step()` after `optimizer.step()`."""

import pytest
import torch

import synccp
from synccp.train.optim import build_optimizer

from .conftest import tiny_net


def _optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    return build_optimizer(name, [model], lr=0.05, momentum=0.9, weight_decay=1e-3, eta=0.02)


def _loop(model, sparsifier, optimizer, steps: int, check) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(4, 3, 6, 6, generator=g)
        loss = model(x).pow(2).mean() + sum(p.abs().sum() for p in model.parameters()) * 1e-4
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sparsifier.step()
        check()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "lars"])
@pytest.mark.parametrize("algorithm", ["gmp", "rigl", "granet", "synccp", "static"])
def test_one_call_per_step_keeps_pruned_weights_exactly_zero(optimizer, algorithm):
    model = tiny_net()
    opt = _optimizer(optimizer, model)
    sparsifier = synccp.Sparsifier(model, optimizer=opt, algorithm=algorithm, density=0.25,
                                   total_steps=12, update_every=2)
    weights = dict(model.named_parameters())

    def check() -> None:
        masks = sparsifier.masks()
        for key, online in masks.items():
            if key.startswith("online/"):
                name = key.split("/", 1)[1]
                union = online | masks[f"second/{name}"]  # shared module: θ lives on M_A ∪ M_B
                assert not weights[name][~union].any(), name

    _loop(model, sparsifier, opt, 12, check)
    assert sparsifier.summary()["online"]["total"] == pytest.approx(0.25, abs=0.01)
    # stem and head dense
    assert sorted(sparsifier.summary()["online"]["layers"]) == ["2.weight", "5.weight"]


def test_the_short_form_and_its_errors():
    model = tiny_net()
    sparsifier = synccp.Sparsifier(model, algorithm="gmp", granularity="unstructured", density=0.2,
                                   total_steps=10)
    assert sparsifier.spec == synccp.SparsitySpec(algorithm="gmp", density=0.2, total_steps=10)
    with pytest.raises(TypeError, match="total_steps"):
        synccp.Sparsifier(model, algorithm="gmp", density=0.2)
    with pytest.raises(TypeError, match="densty"):
        synccp.Sparsifier(model, densty=0.2, total_steps=10)
    with pytest.raises(ValueError, match="sparsity.density must be in"):
        synccp.Sparsifier(model, density=1.5, total_steps=10)
    with pytest.raises(ValueError, match="tau"):
        sparsifier.step(0.99)  # no momentum target


def test_shared_module_runs_each_view_through_its_own_mask():
    model = tiny_net()
    sparsifier = synccp.Sparsifier(model, algorithm="synccp", density=0.25, density_gap=0.25,
                                   total_steps=4, update_every=1, ramp_end_step=1)
    sparsifier.step()  # the ramp ends at step 1: M_A at 0.25, M_B at 0.5
    x = torch.randn(2, 3, 6, 6)
    masked = {name: p * sparsifier.masks()[f"online/{name}"] for name, p in model.named_parameters()
              if f"online/{name}" in sparsifier.masks()}
    expected = torch.func.functional_call(model, masked, (x,))
    assert torch.allclose(sparsifier.encoder("online")(x), expected)
    assert torch.allclose(sparsifier.encoder("second")(x), model(x))  # θ is zero outside M_B


def test_state_dict_round_trip_continues_the_schedule():
    model = tiny_net()
    opt = _optimizer("sgd", model)
    first = synccp.Sparsifier(model, optimizer=opt, algorithm="gmp", density=0.25, total_steps=12,
                              update_every=2)
    _loop(model, first, opt, 5, lambda: None)
    second = synccp.Sparsifier(model, optimizer=opt, algorithm="gmp", density=0.25, total_steps=12,
                               update_every=2)
    second.load_state_dict(first.state_dict())
    first.remove_hooks()
    assert all(torch.equal(m, second.masks()[k]) for k, m in first.masks().items())
    assert second.step() is not None  # step 6 is an update step of the continued schedule
