"""Whole-run integration: exact schedules, dense speedup of 1, dense gradients at RigL updates."""

from __future__ import annotations

import json

import pytest
import torch

from synccp.config import (
    Config,
    DataConfig,
    MethodConfig,
    SparsityConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from synccp.config.specs import run_spec
from synccp.cost import config_report, cost_report, format_cost, run_report, write_cost_json
from synccp.sparsity.schedule import branch_densities


def tiny_config(**sparsity) -> Config:
    """A Fashion-MNIST-shaped config (1 channel) at 8×8, 64 images, batch 16: 4 steps/epoch."""
    cfg = Config(data=DataConfig(name="fashion_mnist", subset=64, image_size=8),
                 method=MethodConfig(name="simclr"), train=TrainConfig(epochs=10, batch_size=16),
                 sparsity=SparsityConfig(**sparsity))
    return config_from_dict(config_to_dict(cfg))  # resolves end_epoch and method defaults


def write_run(
    run_dir, cfg: Config, records: list[dict], total_steps: int, masks: dict | None = None
):
    """A run directory as the trainer writes it: config.json, metrics.jsonl, summary.json, masks."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    lines = [json.dumps({"kind": "mask_update", **r}) for r in records]
    lines.insert(1, json.dumps({"kind": "train", "step": 1, "loss": 1.0}))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "summary.json").write_text(
        json.dumps({"total_steps": total_steps, "steps_per_epoch": 4})
    )
    if masks is not None:
        from safetensors.torch import save_file

        save_file(
            {k: v.clone().contiguous() for k, v in masks.items()},
            str(run_dir / "masks.safetensors"),
        )
    return run_dir


def density_record(step: int, online: dict[str, float], second: dict[str, float]) -> dict:
    def branch(layers):
        return {"total": sum(layers.values()) / max(1, len(layers)), "layers": layers}

    return {
        "step": step,
        "epoch": step / 4,
        "density": {"online": branch(online), "second": branch(second)},
    }


CONV2 = "conv2.weight"
STEM_MACS = 16 * 64 * 8 * 9  # (B·H·W) · C_out · k for the stem, per phase
CONV2_ROWS = 16 * 16  # B · H_o·W_o of conv2 (stride 2 on 8×8)


def step_macs(density: float) -> int:
    """SimCLR: two passes with backward; stem forward + wgrad, conv2 forward + dgrad + wgrad."""
    return 2 * (2 * STEM_MACS + 3 * CONV2_ROWS * round(density * 1152))


def test_run_directory_integrates_logged_densities_exactly(tmp_path, tiny_net):
    cfg = tiny_config(algorithm="gmp", density=0.25, update_every=4)
    records = [
        density_record(s, {CONV2: d}, {CONV2: d}) for s, d in ((0, 1.0), (8, 0.5), (20, 0.25))
    ]
    mask = torch.rand(16, 8, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.25
    run = write_run(
        tmp_path / "run", cfg, records, 40, {f"online/{CONV2}": mask, f"second/{CONV2}": mask}
    )
    report = run_report(run, backbone=tiny_net)
    assert report["totals"]["sparse"]["macs"] == 8 * step_macs(1.0) + 12 * step_macs(
        0.5
    ) + 20 * step_macs(0.25)
    assert report["totals"]["dense"]["macs"] == 40 * step_macs(1.0)
    assert report["run"]["mask_updates"] == 2 and report["source"] == "run"
    entry = report["layers"][CONV2]["phases"]["forward"]["online/a"]
    assert entry["gemm"] == [CONV2_ROWS, 16, 72] and entry["final"]["rule"] == "zero skip"
    gemm_cycles = sum(
        v["run"]["cycles"]
        for e in report["layers"].values()
        for views in e["phases"].values()
        for v in views.values()
    )
    assert report["totals"]["sparse"]["gemm_cycles"] == gemm_cycles
    assert report["speedup"]["cycles"] > 1.0


def test_config_integrates_the_schedule_exactly(tiny_net):
    cfg = tiny_config(algorithm="gmp", density=0.2, start_epoch=1.0, end_epoch=6.0, update_every=4)
    report = config_report(run_spec(cfg), backbone=tiny_net)
    s = cfg.sparsity
    expected = sum(
        step_macs(
            branch_densities(
                step,
                algorithm="gmp",
                density=0.2,
                initial_density=1.0,
                density_gap=s.density_gap,
                start_step=4,
                end_step=24,
                sparse_branch=s.sparse_branch,
                granularity="unstructured",
                n=s.n,
                m=s.m,
                update_every=4,
            )[0]
        )
        for step in range(40)
    )
    assert report["totals"]["sparse"]["macs"] == expected
    assert report["source"] == "config" and "same density for every" in report["density_source"]


def test_speedup_of_the_dense_config_is_one(tiny_net):
    report = config_report(run_spec(tiny_config(algorithm="dense")), backbone=tiny_net)
    assert report["speedup"] == {"cycles": 1.0, "energy": 1.0, "macs": 1.0}
    assert report["run"]["mask_updates"] == 0


def test_rigl_pays_dense_weight_gradients_at_update_steps(tmp_path, tiny_net):
    cfg = tiny_config(algorithm="rigl", density=0.5, update_every=4)
    records = [density_record(s, {CONV2: 0.5}, {CONV2: 0.5}) for s in (0, 4, 8)]
    report = run_report(write_run(tmp_path / "rigl", cfg, records, 12), backbone=tiny_net)
    extra = 2 * 2 * CONV2_ROWS * (1152 - 576)  # 2 updates × 2 passes × (dense − sparse wgrad)
    assert report["totals"]["sparse"]["macs"] == 12 * step_macs(0.5) + extra
    assert "mask_update" not in report["elementwise"]  # RigL re-selects nothing by score
    assert report["elementwise"]["drop_and_grow"]["times"] == 2  # one branch: the shared mask


def test_nm_run_reports_transposability_and_writes_cost_json(tmp_path, tiny_net):
    cfg = tiny_config(algorithm="synccp", granularity="nm", density=0.5, density_gap=0.0)
    o, i = torch.meshgrid(torch.arange(16), torch.arange(8), indexing="ij")
    transposable = ((o + i) % 2 == 0)[:, :, None, None].expand(16, 8, 3, 3)
    plain = (torch.arange(8) % 4 < 2)[None, :, None, None].expand(16, 8, 3, 3)
    records = [density_record(0, {CONV2: 0.5}, {CONV2: 0.5})]
    run = write_run(
        tmp_path / "nm",
        cfg,
        records,
        8,
        {f"online/{CONV2}": transposable, f"second/{CONV2}": plain},
    )
    report = run_report(run, backbone=tiny_net)
    assert report["layers"][CONV2]["transposable"] == {"online": True, "second": False}
    dgrad = report["layers"][CONV2]["phases"]["dgrad"]
    assert dgrad["online/a"]["final"]["rule"] == "2:4 compressed"
    assert dgrad["second/b"]["final"]["rule"].startswith("dense")
    write_cost_json(report, run / "cost.json")
    assert json.loads((run / "cost.json").read_text())["speedup"] == report["speedup"]
    assert "speedup over dense simclr" in format_cost(report)


def test_cost_report_of_a_config_file_builds_the_real_model(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[data]\nname = "fashion_mnist"\nsubset = 64\nimage_size = 16\n'
        '[model]\nwidth = 4\n[method]\nname = "byol"\nproj_hidden_dim = 32\n'
        "proj_output_dim = 16\npred_hidden_dim = 32\n[train]\nepochs = 2\nbatch_size = 32\n"
        '[sparsity]\nalgorithm = "synccp"\ndensity = 0.2\nupdate_every = 1\n'
    )
    report = cost_report(toml)
    assert report["run"]["total_steps"] == 4 and "predictor.0.weight" in report["layers"]
    assert report["layers"]["conv1.weight"]["phases"].keys() == {"forward", "wgrad"}
    assert report["speedup"]["macs"] > 1.0


def test_records_timeline_counts_an_update_logged_at_the_last_step():
    from synccp.cost.timeline import records_timeline

    records = [density_record(s, {CONV2: d}, {}) for s, d in ((0, 1.0), (6, 0.5), (8, 0.5))]
    intervals, updates = records_timeline(records, 8)
    assert [(i.start, i.end) for i in intervals] == [(0, 6), (6, 8)] and updates == [6, 8]
    assert intervals[1].densities["second"] == {CONV2: 0.5}  # empty second branch → online's


@pytest.mark.parametrize(
    "algorithm, window, method",
    [
        ("synccp", (0.3, 1.4), "simclr"),
        ("sdclr", (0.0, 1.5), "simclr"),
        ("granet", (0.5, 1.25), "simclr"),
        ("rigl", (0.5, 1.25), "simclr"),
        ("synccp", (0.3, 1.4), "byol"),
        ("gmp", (0.3, 1.4), "byol"),
    ],
)
def test_config_update_steps_are_the_trainers(fmnist_root, tmp_path, algorithm, window, method):
    """The cost model's update steps for a config (before training) are the steps at which a real
    run logged a mask update: fractional ramp epochs, the end step off the update grid, SDCLR's
    epoch cadence, GraNet regrowing to the end, RigL's own window; and its element-wise work
    (score-EMA steps × branches, selections × branches, drop-and-grow updates, target-shadow
    steps) is what the Sparsifier counted doing in that run."""
    from helpers import tiny_overrides
    from synccp import rundir
    from synccp.config import load_config
    from synccp.cost.timeline import config_clock, update_steps
    from synccp.train.loop import pretrain

    sets = tiny_overrides(
        fmnist_root,
        **{
            "sparsity.algorithm": f'"{algorithm}"',
            "sparsity.update_every": 3,
            "sparsity.start_epoch": window[0],
            "sparsity.end_epoch": window[1],
            "method.name": f'"{method}"',
            "train.epochs": 2.5,
            "data.subset": 96,
            "sparsity.score_ema": 0.5,
        },
    )
    cfg = load_config(None, sets)
    summary = pretrain(cfg, tmp_path / "run")
    logged = [
        r["step"] for r in rundir.read_metrics(tmp_path / "run", "mask_update") if r["step"] > 0
    ]
    assert logged and update_steps(run_spec(cfg), config_clock(run_spec(cfg))) == logged
    did = summary["sparsity"]["work"]
    modelled = config_report(run_spec(cfg))["elementwise"]
    branches = 1 if method == "simclr" or algorithm == "gmp" else 2
    assert modelled["score_ema"]["times"] * branches == did["score_ema_updates"]
    assert modelled.get("mask_update", {}).get("times", 0) == did["mask_selections"]
    assert modelled.get("drop_and_grow", {}).get("times", 0) == did["regrow_updates"]
    assert modelled.get("target_shadow", {}).get("times", 0) == did["shadow_steps"]
    if algorithm == "granet":  # prune-and-regrow after the ramp, to the end of training
        assert max(logged) > round(window[1] * summary["steps_per_epoch"])
