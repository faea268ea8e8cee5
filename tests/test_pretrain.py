"""End to end: pretrain → run directory → eval, resume exactness, CLI errors."""

import json

import pytest
import torch
from safetensors.torch import load_file

from helpers import method_keys, tiny_overrides
from synccp.cli import main
from synccp.config import load_config
from synccp.eval.run import evaluate
from synccp.rundir import read_metrics
from synccp.train.loop import pretrain
from synccp.train.runtime import use_bf16
from synccp.train.setup import build_setup

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cfg(root, **extra):
    return load_config(None, tiny_overrides(root, **extra))


def test_synccp_byol_run_directory_is_complete_and_pruned(fmnist_root, tmp_path):
    cfg = _cfg(fmnist_root, **{"sparsity.density": 0.2, "sparsity.density_gap": 0.2})
    summary = pretrain(cfg, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoints/last.pt",
                 "model.safetensors", "masks.safetensors"):
        assert (run / name).is_file(), name
    model, masks = (
        load_file(str(run / "model.safetensors")),
        load_file(str(run / "masks.safetensors")),
    )
    online = {k[len("online/") :]: v for k, v in masks.items() if k.startswith("online/")}
    assert online and all(not model[name][~mask].any() for name, mask in online.items())
    kept = sum(int(m.sum()) for m in online.values()) / sum(m.numel() for m in online.values())
    assert abs(kept - 0.2) < 0.01
    second = {k[len("second/") :]: v for k, v in masks.items() if k.startswith("second/")}
    kept_second = sum(int(m.sum()) for m in second.values()) / sum(
        m.numel() for m in second.values()
    )
    assert abs(kept_second - 0.4) < 0.01
    updates = read_metrics(run, "mask_update")
    assert updates[0]["step"] == 0 and len(updates) > 2
    assert "flip_rate" in updates[-1]["oscillation"]["online"]["total"]
    assert summary["total_steps"] == 12 and read_metrics(run, "train")[-1]["step"] == 12
    result = evaluate(run)
    assert 0 <= result["encoder"]["knn_top1"] <= 100 and "linear_top1" in result["raw_pixels"]
    assert abs(result["online_density"] - kept) < 1e-6
    assert json.loads((run / "eval.json").read_text()) == result


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_bf16_on_cpu_trains_sparse_and_evaluates_in_bf16(fmnist_root, tmp_path, method):
    cfg = _cfg(
        fmnist_root,
        **{
            **method_keys(method, **{"method.pred_hidden_dim": 16}),
            "train.precision": '"bf16"',
            "sparsity.density": 0.2,
        },
    )
    setup = build_setup(cfg, torch.device("cpu"))
    assert setup.runtime.bf16 and setup.runtime.channels_last
    with setup.runtime.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled(
            "cpu"
        )
    summary = pretrain(cfg, tmp_path / "run")
    assert (
        summary["final_loss"] == summary["final_loss"]
    )  # finite (the NaN guard would have stopped it)
    model, masks = (
        load_file(str(tmp_path / "run" / "model.safetensors")),
        load_file(str(tmp_path / "run" / "masks.safetensors")),
    )
    online = {k[len("online/") :]: v for k, v in masks.items() if k.startswith("online/")}
    assert all(
        model[name].dtype == torch.float32 and not model[name][~mask].any()
        for name, mask in online.items()
    )
    result = evaluate(tmp_path / "run")
    assert result["feature_precision"] == "bf16" and 0 <= result["encoder"]["knn_top1"] <= 100


def test_precision_auto_is_bf16_on_cuda_only():
    assert use_bf16("bf16", torch.device("cpu")) and use_bf16("bf16", torch.device("cuda"))
    assert use_bf16("auto", torch.device("cuda")) and not use_bf16("auto", torch.device("cpu"))
    assert not use_bf16("fp32", torch.device("cuda")) and not use_bf16("fp32", torch.device("cpu"))


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_resume_mid_ramp_equals_uninterrupted_run(fmnist_root, tmp_path, method):
    cfg = _cfg(
        fmnist_root,
        **{
            "method.name": f'"{method}"',
            "sparsity.algorithm": '"synccp"',
            "sparsity.score_ema": 0.5,
        },
    )
    pretrain(cfg, tmp_path / "full")
    assert pretrain(cfg, tmp_path / "cut", stop_after=7) == {"stopped_at": 7}  # killed mid-epoch 2
    pretrain(cfg, tmp_path / "cut", resume=True)
    for name in ("model.safetensors", "masks.safetensors"):
        full, cut = (
            load_file(str(tmp_path / "full" / name)),
            load_file(str(tmp_path / "cut" / name)),
        )
        assert full.keys() == cut.keys()
        for key in full:
            assert torch.equal(full[key], cut[key]), key
    steps = [r["step"] for r in read_metrics(tmp_path / "cut", "train")]
    assert steps == sorted(set(steps))  # no duplicated log lines after the resume


@pytest.mark.parametrize("method", ["simclr", "mocov2", "byol", "barlow", "simsiam"])
def test_every_method_trains_sparse_through_the_loop(fmnist_root, tmp_path, method):
    cfg = _cfg(
        fmnist_root,
        **{
            **method_keys(method, **{"method.pred_hidden_dim": 16}),
            "train.epochs": 1,
            "sparsity.end_epoch": 1,
            "sparsity.granularity": '"nm"',
        },
    )
    summary = pretrain(cfg, tmp_path / method)
    assert summary["final_loss"] is not None and summary["final_loss"] == summary["final_loss"]
    assert abs(summary["sparsity"]["online"]["total"] - 0.5) < 0.02


def test_cli_errors_name_the_key_and_leave_runs_alone(fmnist_root, tmp_path, capsys):
    assert main(["pretrain", "--set", "sparsity.n=4", "--out", str(tmp_path / "x")]) == 2
    assert "sparsity.n" in capsys.readouterr().err and not (tmp_path / "x").exists()
    args = ["pretrain", "--no-eval", "--out", str(tmp_path / "r")] + [
        a
        for o in tiny_overrides(fmnist_root, **{"train.epochs": 1, "sparsity.end_epoch": 1})
        for a in ("--set", o)
    ]
    assert main(args) == 0
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    assert main(args + ["--set", "train.seed=5"]) == 2
    assert "different run" in capsys.readouterr().err
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
