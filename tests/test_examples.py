"""The examples/ loops (plain PyTorch, synccp only as the Sparsifier) on the tiny Fashion-MNIST
fixture: final densities on target and pruned weights exactly zero."""

import importlib.util
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _zero_outside(module: torch.nn.Module, masks: dict, branch: str) -> None:
    weights = dict(module.named_parameters())
    names = [key.split("/", 1)[1] for key in masks if key.startswith(f"{branch}/")]
    assert names
    for name in names:
        assert not weights[name][~masks[f"{branch}/{name}"]].any(), (branch, name)


def _one_unit(sparsifier) -> float:
    """Half of one element, as a share of the prunable weights (the allocation's rounding)."""
    layers = sparsifier.masks()
    return 1.0 / sum(m.numel() for key, m in layers.items() if key.startswith("online/"))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_supervised_gmp_example_reaches_90_percent_with_exact_zeros(fmnist_root, one_thread,
                                                                    optimizer):
    example = _load("supervised_gmp")
    model, sparsifier, loss = example.train(str(fmnist_root), steps=24, batch_size=16,
                                            optimizer=optimizer)
    summary = sparsifier.summary()
    assert summary["online"]["total"] == pytest.approx(0.1, abs=_one_unit(sparsifier))
    # stem and head dense
    assert set(summary["online"]["layers"]) == {"2.weight", "6.weight", "10.weight"}
    _zero_outside(model, sparsifier.masks(), "online")
    assert loss == loss


def test_byol_example_trains_synccp_with_a_denser_target(fmnist_root, one_thread):
    example = _load("byol_synccp")
    online, target, sparsifier, loss = example.train(str(fmnist_root), steps=24, batch_size=16)
    summary, masks = sparsifier.summary(), sparsifier.masks()
    unit = _one_unit(sparsifier)
    assert summary["online"]["total"] == pytest.approx(0.1, abs=unit)
    assert summary["second"]["total"] == pytest.approx(0.2, abs=unit)
    _zero_outside(online, masks, "online")
    _zero_outside(target, masks, "second")
    for key, mask in masks.items():
        if key.startswith("online/"):
            # M_online ⊆ M_target
            assert not (mask & ~masks["second/" + key.split("/", 1)[1]]).any()
    names = [k.split("/", 1)[1] for k in masks if k.startswith("second/")]
    extras = [target.get_parameter(n)[masks["second/" + n] & ~masks["online/" + n]] for n in names]
    assert all(bool((e != 0).all()) for e in extras)  # the target's extra entries stay alive
    assert loss == loss


def test_the_readme_example_runs(one_thread):
    text = (EXAMPLES.parent / "README.md").read_text()
    section = text[text.index("## Use it from your own training code"):]
    code = section[section.index("```python") + len("```python"):]
    exec(compile(code[:code.index("```")], "README.md", "exec"), {})  # asserts the final density
