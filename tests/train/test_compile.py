"""`train.compile`: the online backbone compiled in place trains the eager run, keeps every name,
resumes, and is refused where torch's CPU kernels are unsafe (oneDNN#6035).

The suite compiles with `aot_eager` (`synccp.train.setup.COMPILE_OPTIONS`): the same Dynamo
graphs and AOTAutograd as the real inductor path (the BatchNorm-under-two-forwards failure that
once removed this key was an autograd one), without minutes of C++ generation per test. The
inductor path is measured by `benchmarks/bench_compile.py` (speed and per-step losses).
"""

import pytest
import torch
from safetensors.torch import load_file
from torch._dynamo.utils import counters

from helpers import tiny_overrides
from synccp.cells import cell_identity
from synccp.config import load_config
from synccp.config.load import config_to_dict
from synccp.train import setup as train_setup
from synccp.train.loop import pretrain

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def aot_eager(monkeypatch):
    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(train_setup, "COMPILE_OPTIONS", {"backend": "aot_eager"})
    yield
    torch._dynamo.reset()


def _cfg(root, *, compiled: bool, **extra):
    values = {"model.width": 8, "sparsity.algorithm": '"synccp"', "train.epochs": 1,
              "sparsity.end_epoch": 0.75, "train.compile": str(compiled).lower(), **extra}
    return load_config(None, tiny_overrides(root, **values))


def _artifacts(run):
    return {name: load_file(str(run / name)) for name in ("model.safetensors",
                                                          "masks.safetensors")}


@pytest.mark.parametrize("method", ["simclr", "byol"])  # shared encoder (θ⊙M_A, θ⊙M_B), EMA target
def test_compiled_run_trains_the_eager_run(fmnist_root, tmp_path, one_thread, aot_eager, method):
    extra = {"method.name": f'"{method}"'}
    eager = pretrain(_cfg(fmnist_root, compiled=False, **extra), tmp_path / "eager")
    assert not counters["frames"]["ok"]  # eager: nothing compiled
    compiled = pretrain(_cfg(fmnist_root, compiled=True, **extra), tmp_path / "compiled")
    assert counters["frames"]["ok"] >= 1 and not counters["recompiles"]  # graphs kept all run
    assert compiled["final_loss"] == pytest.approx(eager["final_loss"], rel=1e-4)
    want, got = _artifacts(tmp_path / "eager"), _artifacts(tmp_path / "compiled")
    for name in want:
        assert want[name].keys() == got[name].keys(), name  # no `_orig_mod.` prefixes
    for key, mask in want["masks.safetensors"].items():
        assert torch.equal(mask, got["masks.safetensors"][key]), key  # the same masks
    for key, weight in want["model.safetensors"].items():
        torch.testing.assert_close(got["model.safetensors"][key], weight, rtol=1e-3, atol=1e-4)
    online = {k.removeprefix("online/"): m for k, m in got["masks.safetensors"].items()
              if k.startswith("online/")}
    assert online and all(not got["model.safetensors"][name][~mask].any()
                          for name, mask in online.items())  # exactly zero off the mask


def test_compiled_run_resumes_to_the_uninterrupted_one(fmnist_root, tmp_path, one_thread,
                                                       aot_eager):
    cfg = _cfg(fmnist_root, compiled=True, **{"train.epochs": 2, "sparsity.end_epoch": 1.5})
    pretrain(cfg, tmp_path / "full")
    assert pretrain(cfg, tmp_path / "cut", stop_after=7) == {"stopped_at": 7}
    pretrain(cfg, tmp_path / "cut", resume=True)
    full, cut = _artifacts(tmp_path / "full"), _artifacts(tmp_path / "cut")
    for name in full:
        for key in full[name]:
            torch.testing.assert_close(cut[name][key], full[name][key], rtol=1e-4, atol=1e-6)


def test_compile_refuses_a_backbone_torch_cannot_train_on_the_cpu(fmnist_root, tmp_path,
                                                                   hostile):
    cfg = _cfg(fmnist_root, compiled=True, **{"model.width": 4})
    with pytest.raises(ValueError, match=r"train\.compile=true.*layer2\.0\.downsample\.0.*4 input "
                                         r"channels.*oneDNN#6035.*model\.width of 8") as err:
        pretrain(cfg, tmp_path / "run")
    hostile("refused before anything is written, naming the key, the layer and the reason",
            str(err.value))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_compile_off_leaves_the_names_of_runs_committed_before_the_key(fmnist_root):
    off = config_to_dict(_cfg(fmnist_root, compiled=False))
    before = {section: {k: v for k, v in table.items() if (section, k) != ("train", "compile")}
              for section, table in off.items()}
    on = config_to_dict(_cfg(fmnist_root, compiled=True))
    assert cell_identity(off) == cell_identity(before) != cell_identity(on)
