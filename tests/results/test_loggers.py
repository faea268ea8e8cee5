"""Live loggers: TensorBoard event files and W&B records mirror metrics.jsonl."""

import sys
import types

import pytest

from helpers import tiny_overrides
from synccp.config import ConfigError, load_config
from synccp.results.loggers import scalars
from synccp.rundir import read_metrics
from synccp.train.loop import pretrain

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(root, tmp_path, loggers, **extra):
    cfg = load_config(None, tiny_overrides(root, **{"train.loggers": f'"{loggers}"', **extra}))
    pretrain(cfg, tmp_path / "run")
    return tmp_path / "run"


def test_tensorboard_events_mirror_metrics_jsonl(fmnist_root, tmp_path, one_thread):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _run(fmnist_root, tmp_path, "tensorboard")
    events = EventAccumulator(str(run / "tb")).Reload()
    train = read_metrics(run, "train")
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    updates = read_metrics(run, "mask_update")
    density = events.Scalars("mask_update/density/online/total")
    assert [e.step for e in density] == [r["step"] for r in updates]
    assert density[-1].value == pytest.approx(updates[-1]["density"]["online"]["total"], rel=1e-6)
    assert not any("layers" in tag for tag in events.Tags()["scalars"])


def test_a_two_step_run_logs_both_steps(fmnist_root, tmp_path, one_thread):
    """The issue: a 2-step run wrote a single train record; step 1 is always logged now."""
    run = _run(fmnist_root, tmp_path, "", **{"train.epochs": 1 / 3, "train.log_every": 10,
                                             "sparsity.end_epoch": 0.25})
    assert [r["step"] for r in read_metrics(run, "train")] == [1, 2]


def test_wandb_logger_runs_offline_and_logs_every_record(
    fmnist_root, tmp_path, one_thread, monkeypatch
):
    """wandb itself is an optional extra (not in dev: ~30 packages): a stand-in module records our
    calls. (The real wandb 0.31 ran the same offline, checked by hand: README, "Watching a run".)"""
    calls = {"log": [], "finished": 0}

    class Run:
        def log(self, data, step):
            calls["log"].append((step, data))

        def finish(self):
            calls["finished"] += 1

    def init(**kwargs):
        calls["init"] = kwargs
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = _run(fmnist_root, tmp_path, "wandb")
    assert calls["init"]["mode"] == "offline" and calls["finished"] == 1
    assert (
        calls["init"]["dir"] == str(run) and calls["init"]["config"]["train"]["loggers"] == "wandb"
    )
    records = read_metrics(run)
    assert [step for step, _ in calls["log"]] == [r["step"] for r in records]
    assert calls["log"][-1][1] == scalars(records[-1])


def test_unknown_logger_and_missing_package_are_clear_errors(fmnist_root, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="train.loggers"):
        load_config(None, ['train.loggers="tensorbord"'])
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(RuntimeError, match=r"synccp\[wandb\]"):
        _run(fmnist_root, tmp_path, "wandb")


def test_scalars_flatten_nested_numbers_and_skip_layer_tables():
    record = {
        "kind": "mask_update",
        "step": 3,
        "epoch": 0.5,
        "density": {"online": {"total": 0.4, "layers": {"a": 1.0}}},
        "flag": True,
    }
    assert scalars(record) == {"mask_update/epoch": 0.5, "mask_update/density/online/total": 0.4}
