"""tools/learning_curve.py trains a run in segments and probes every epoch-end checkpoint; the
run it leaves is bit-identical to an uninterrupted one. tools/protocol_curves.py plots them."""

import importlib.util
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers import tiny_overrides
from synccp.config import load_config
from synccp.train.loop import pretrain

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segments_probe_each_epoch_and_leave_the_uninterrupted_run(fmnist_root, tmp_path, capsys):
    sets = tiny_overrides(fmnist_root, **{"train.epochs": 2, "eval.linear_epochs": 1})
    argv = [a for s in sets for a in ("--set", s)] + ["--out", str(tmp_path / "curve")]
    assert _tool("learning_curve").main(argv) == 0
    lines = (tmp_path / "curve" / "curve.jsonl").read_text().splitlines()
    points = [json.loads(line) for line in lines]
    assert [p["step"] for p in points] == [6, 12] and [p["epoch"] for p in points] == [1.0, 2.0]
    assert all(0 <= p["knn_top1"] <= 100 for p in points)
    assert (tmp_path / "curve" / "eval.json").is_file()

    pretrain(load_config(None, sets), tmp_path / "straight")
    for name in ("model.safetensors", "masks.safetensors"):
        a = load_file(str(tmp_path / "curve" / name))
        b = load_file(str(tmp_path / "straight" / name))
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), name

    assert _tool("learning_curve").main(argv) == 0  # again: nothing re-trained, no point repeated
    assert len((tmp_path / "curve" / "curve.jsonl").read_text().splitlines()) == 2

    capsys.readouterr()
    png = tmp_path / "curves.png"
    assert _tool("protocol_curves").main([str(tmp_path), "--out", str(png)]) == 0
    table = capsys.readouterr().out
    lr = json.loads((tmp_path / "curve" / "config.json").read_text())["train"]["lr"]
    assert png.stat().st_size > 10_000
    assert f"| byol synccp w4 s0 (2 ep × batch 16, lr {lr:g}) |" in table


def test_early_loss_retrains_the_first_steps_exactly_and_shows_where_a_change_parts(
    fmnist_root, tmp_path, capsys
):
    run = tmp_path / "run"
    pretrain(load_config(None, tiny_overrides(fmnist_root)), run)
    tool = _tool("early_loss")
    capsys.readouterr()
    tool.main([str(run), "--steps", "4", "--out", str(tmp_path / "same")])
    same = capsys.readouterr().out
    logged = sorted(s for s in tool.losses(tmp_path / "same") if s <= 4)
    assert logged and f"identical at every logged step ({len(logged)})" in same
    assert f"{logged[-1]:4d}  " in same  # under 100 steps every logged step is printed

    tool.main([str(run), "--steps", "4", "--out", str(tmp_path / "lr"), "--set", "train.lr=3.0"])
    changed = capsys.readouterr().out
    assert "first differs at step" in changed and "train.lr=3.0" in changed
    assert tool.first_difference({1: 2.0, 5: 1.5}, {1: 2.0, 5: 1.25}) == (
        "first differs at step 5: 1.500000 against the run's 1.250000"
    )


def test_barlow_terms_are_the_loss_and_read_the_trained_checkpoint(fmnist_root, tmp_path, capsys):
    import torch

    from synccp.losses import barlow_twins

    tool = _tool("barlow_terms")
    a, b = torch.randn(32, 16), torch.randn(32, 16) + 0.5 * torch.randn(32, 16)

    class Heads(torch.nn.Module):  # identity backbone and projector: the terms of (a, b) as given
        lambda_offdiag = 0.0051
        backbone = projector = torch.nn.Identity()

    t = tool.terms(Heads(), a, b)
    loss = barlow_twins(a, b, lambda_offdiag=0.0051, scale=0.1)
    assert 0.1 * (t["on_diagonal"] + t["lambda_off_diagonal"]) == pytest.approx(float(loss), 1e-3)
    assert t["feature_dim"] == 16 and 1 < t["feature_effective_rank"] <= 16

    sets = tiny_overrides(fmnist_root, **{"method.name": '"barlow"',
                                          "sparsity.algorithm": '"dense"'})
    pretrain(load_config(None, sets), tmp_path / "run")
    capsys.readouterr()
    assert tool.main([str(tmp_path / "run"), "--batches", "2"]) == 0
    start, end = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert start["state"] == "initialization" and end["state"] == "step 12"
    assert start["batches"] == end["batches"] == 2 and start != end

    pretrain(load_config(None, tiny_overrides(fmnist_root)), tmp_path / "byol")
    with pytest.raises(SystemExit):  # a BYOL run is refused by name, not misread
        tool.main([str(tmp_path / "byol")])
    assert "a dense Barlow Twins run is needed" in capsys.readouterr().err


def test_curve_table_puts_points_under_their_epochs_and_tells_method_options_apart():
    tool = _tool("protocol_curves")

    def row(every, proj):
        curve = [{"epoch": float(e), "knn_top1": 70.0 + e} for e in range(every, 9, every)]
        return {"method": "barlow", "algorithm": "dense", "width": 8, "seed": 0, "epochs": 8,
                "batch": 256, "lr": 0.3, "curve": curve, "eval": None, "train_s": 60.0,
                "options": {"proj_output_dim": proj, "scale": 0.1}}

    rows = tool.distinguish([row(1, 2048), row(2, 256)])
    assert [r["differs"] for r in rows] == [{"proj_output_dim": 2048}, {"proj_output_dim": 256}]
    lines = tool.table(rows).splitlines()
    assert lines[0].split(" | ")[1:9] == [f"kNN e{e}" for e in range(1, 9)]
    every2 = lines[3].split(" | ")
    assert "lr 0.3, proj_output_dim 256)" in every2[0]
    assert every2[1:9] == ["-", "72.00", "-", "74.00", "-", "76.00", "-", "78.00"]
    assert tool.distinguish([row(1, 2048)])[0]["differs"] == {}  # nothing to tell apart
