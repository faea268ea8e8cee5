"""The report: CSV rows from fabricated runs, mean ± std over seeds, markdown tables, plots."""

import csv
import json
import statistics

import pytest
from PIL import Image

from synccp.results.report import (
    ReportError,
    build_report,
    find_run_dirs,
    load_run,
    ramp_mean,
    run_row,
)
from synccp.results.tables import CSV_COLUMNS, format_mean_std, mean_std

PLOTS = (
    "accuracy_vs_density.png",
    "flip_rate.png",
    "online_second_iou.png",
    "layer_density.png",
    "accuracy_vs_cost.png",
)


@pytest.fixture(scope="module")
def study_report(study, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report([study], out), out


def _csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _seeds(root, make_run, linears, **kwargs):
    for seed, linear in enumerate(linears):
        make_run(
            root / f"{kwargs.get('algorithm', 'synccp')}_s{seed}",
            seed=seed,
            linear=linear,
            knn=linear - 2,
            **kwargs,
        )


def test_csv_has_one_row_per_run_with_values_from_the_files(tmp_path, make_run):
    _seeds(tmp_path / "runs", make_run, [80.0, 81.0, 83.0])
    make_run(tmp_path / "runs" / "nested" / "dense_s0", algorithm="dense", linear=86.0, cost=False)
    make_run(tmp_path / "runs" / "nm", algorithm="gmp", granularity="nm", n=1, m=4, linear=79.0)
    build_report([tmp_path / "runs"], tmp_path / "out")
    rows = _csv(tmp_path / "out" / "results.csv")
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
    by_run = {row["run"].rsplit("/", 1)[-1]: row for row in rows}
    sync = by_run["synccp_s2"]
    assert (sync["method"], sync["algorithm"], sync["granularity"]) == (
        "byol",
        "synccp",
        "unstructured",
    )
    assert (
        float(sync["linear_top1"]) == 83.0
        and float(sync["knn_top1"]) == 81.0
        and sync["seed"] == "2"
    )
    assert float(sync["density"]) == 0.1 and float(sync["density_gap"]) == 0.1
    summary = json.loads((tmp_path / "runs" / "synccp_s2" / "summary.json").read_text())["sparsity"]
    assert (
        float(sync["final_online_density"])
        == summary["online"]["total"]
        == pytest.approx(0.1, abs=1e-3)
    )
    assert (
        float(sync["final_second_density"])
        == summary["second"]["total"]
        == pytest.approx(0.2, abs=1e-3)
    )
    last = [
        json.loads(line)
        for line in (tmp_path / "runs" / "synccp_s2" / "metrics.jsonl").open()
        if '"mask_update"' in line
    ][-1]
    assert (
        float(sync["final_online_second_iou"])
        == last["oscillation"]["online_vs_second_iou"]["total"]
    )
    assert float(sync["raw_linear_top1"]) == 84.27 and float(sync["wall_s"]) == 132.0
    cost = json.loads((tmp_path / "runs" / "synccp_s2" / "cost.json").read_text())
    totals = cost["totals"]
    assert float(sync["train_flops_ratio"]) == pytest.approx(
        totals["sparse"]["macs"] / totals["dense"]["macs"]
    )
    assert float(sync["modeled_speedup"]) == pytest.approx(cost["speedup"]["cycles"])
    dense = by_run["dense_s0"]
    assert dense["granularity"] == "dense" and float(dense["density"]) == 1.0
    assert (
        dense["train_flops_ratio"] == ""
        and dense["modeled_speedup"] == ""
        and dense["ramp_flip_rate"] == ""
    )
    nm = by_run["nm"]
    assert (
        nm["granularity"] == "nm 1:4" and float(nm["density"]) == 0.25 and nm["density_gap"] == ""
    )


@pytest.mark.parametrize(
    "cost, ratio, speedup",
    [
        ({"totals": {"sparse_macs": 2.0, "dense_macs": 8.0, "speedup": 3.0}}, 0.25, 3.0),
        (
            {
                "totals": {"sparse": {"macs": 1.0}, "dense": {"macs": 4.0}},
                "speedup": {"cycles": 2.5},
            },
            0.25,
            2.5,
        ),
        ({"totals": {"sparse": {}}, "speedup": {}}, None, None),
        ({"unrelated": 1}, None, None),
    ],
)
def test_cost_fields_are_read_defensively(tmp_path, make_run, cost, ratio, speedup):
    path = make_run(tmp_path / "r", cost=False)
    (path / "cost.json").write_text(json.dumps(cost))
    row = run_row(load_run(path))
    assert row["train_flops_ratio"] == ratio and row["modeled_speedup"] == speedup


def test_ramp_flip_rate_averages_updates_inside_the_ramp_only(tmp_path, make_run):
    run = load_run(make_run(tmp_path / "r", start=2, end=5))
    inside = [
        u["oscillation"]["online"]["total"]["flip_rate"]
        for u in run.updates
        if u["step"] > 0 and 2 < u["epoch"] <= 5
    ]
    assert len(inside) < len(run.updates) - 1
    assert ramp_mean(run, "online") == pytest.approx(statistics.fmean(inside))
    assert run_row(run)["ramp_flip_rate"] == pytest.approx(statistics.fmean(inside))


def test_sdclr_flip_rate_is_its_pruned_branch_over_the_whole_run(tmp_path, make_run):
    # As a real SDCLR run logs it (sparse_branch "second"): the online encoder stays dense and
    # never flips; the pruned second branch is re-pruned at every epoch end, past the ramp keys.
    path = make_run(tmp_path / "r", algorithm="sdclr", start=1, end=6, epochs=8)
    updates = []
    for epoch in range(9):
        record = {"kind": "mask_update", "step": epoch * 39, "epoch": float(epoch),
                  "density": {"online": {"total": 1.0, "layers": {}},
                              "second": {"total": 0.1, "layers": {}}}}
        if epoch:
            record["oscillation"] = {
                branch: {"total": {"flip_rate": flip, "revival_rate": flip / 2}, "layers": {}}
                for branch, flip in (("online", 0.0), ("second", 0.5 / epoch))}
        updates.append(record)
    lines = [line for line in (path / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] != "mask_update"]
    (path / "metrics.jsonl").write_text(
        "\n".join(lines + [json.dumps(u) for u in updates]) + "\n")
    row = run_row(load_run(path))
    every = [0.5 / epoch for epoch in range(1, 9)]  # epochs 7 and 8 count: SDCLR has no ramp
    assert row["ramp_flip_rate"] == pytest.approx(statistics.fmean(every))
    assert row["ramp_revival_rate"] == pytest.approx(statistics.fmean(every) / 2)
    assert row["ramp_flip_rate_second"] == row["ramp_flip_rate"]


def test_mean_std_uses_sample_std_over_seeds():
    assert mean_std([80.0, 81.0, 83.0]) == pytest.approx(
        (81.3333, statistics.stdev([80, 81, 83]), 3), rel=1e-4
    )
    assert mean_std([None, 70.0]) == (70.0, 0.0, 1)
    assert mean_std([]) is None
    assert format_mean_std([80.0, 81.0, 83.0], "{:.2f}") == "81.33 ± 1.53"
    assert format_mean_std([80.0], "{:.2f}") == "80.00"
    assert format_mean_std([None], "{:.2f}") == "-"
    assert format_mean_std([0.5, 0.7], "{:.1f}", std=False) == "0.6"


def test_markdown_table_groups_seeds_and_shows_the_baseline(tmp_path, make_run):
    _seeds(tmp_path / "runs", make_run, [80.0, 81.0, 83.0])
    _seeds(tmp_path / "runs", make_run, [78.0, 79.0], algorithm="granet")
    make_run(tmp_path / "runs" / "dense", algorithm="dense", linear=86.0)
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    results = text.split("## Results")[1].split("## Baseline")[0]
    lines = {
        line.split("|")[2].strip(): line
        for line in results.splitlines()
        if line.startswith("| byol |")
    }
    assert set(lines) == {"dense", "granet", "synccp"}
    assert "| 3 | 79.33 ± 1.53 | **81.33 ± 1.53** |" in lines["synccp"]
    assert "| 2 | 76.50 ± 0.71 | 78.50 ± 0.71 |" in lines["granet"]
    assert "| byol | dense | dense | 1 | 1 | 80.00 | 86.00 |" in lines["dense"]
    assert "| fashion_mnist | raw pixels (no training) | 85.61 | 84.27 |" in text
    assert "gap Δ" not in text  # nothing swept besides the algorithm
    for name in PLOTS:
        assert f"]({name})" in text
    assert "`model.width=16`" in text and "cpu (torch 2.13.0)" in text


def test_every_configuration_is_compared_with_raw_pixels_seed_by_seed(tmp_path, make_run):
    """The protocol's bar (issue 14): an encoder against the raw pixels of its own eval.json,
    paired by seed, and on how many seeds it is above them on both probes (raw: 85.61 / 84.27)."""
    _seeds(tmp_path / "runs", make_run, [84.77, 85.27, 83.27])  # kNN 2 lower: 82.77, 83.27, 81.27
    for seed, knn in enumerate((86.61, 87.61)):
        make_run(tmp_path / "runs" / f"dense_s{seed}", algorithm="dense", seed=seed,
                 knn=knn, linear=knn - 1.0)
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    baseline = text.split("## Baseline")[1].split("## Plots")[0]
    assert "| byol | dense | dense | 1 | 2 | +1.50 ± 0.71 | +1.84 ± 0.71 | 2 of 2 |" in baseline
    # linear − raw: +0.50, +1.00, −1.00; kNN − raw: all negative, so no seed is above on both
    assert "| byol | synccp | unstructured | 0.1 | 3 | -3.17 ± 1.04 | +0.17 ± 1.04 | 0 of 3 |" in (
        baseline
    )


def test_differences_to_dense_are_paired_by_seed_and_setting(tmp_path, make_run):
    """Each sparse run minus the dense run of its seed (same settings outside sparsity.*): a
    seed effect shared by both cancels, which a difference of means over seeds would keep."""
    root = tmp_path / "runs"
    for seed, (sparse, dense) in enumerate([(80.0, 81.0), (70.0, 72.0)]):  # seed 1 worse for both
        make_run(root / f"synccp_s{seed}", seed=seed, linear=sparse, knn=sparse - 5)
        make_run(root / f"dense_s{seed}", algorithm="dense", seed=seed, linear=dense, knn=dense - 5)
    make_run(root / "granet_s3", algorithm="granet", seed=3, linear=74.0)  # no dense run of seed 3
    text = build_report([root], tmp_path / "out").read_text()
    assert "linear − dense, same seed" in text
    synccp = next(line for line in text.splitlines() if line.startswith("| byol | synccp |"))
    assert (
        "| **75.00 ± 7.07** | -1.50 ± 0.71 | -1.50 ± 0.71 |" in synccp
    )  # linear mean ± std, kNN and linear Δ
    granet = next(line for line in text.splitlines() if line.startswith("| byol | granet |"))
    assert "| 74.00 | - | - |" in granet
    with open(tmp_path / "out" / "results.csv") as handle:
        rows = {r["run"].split("/")[-1]: r for r in csv.DictReader(handle)}
    assert (
        float(rows["synccp_s1"]["linear_vs_dense"]) == -2.0
        and rows["dense_s0"]["linear_vs_dense"] == ""
    )


def test_swept_settings_become_columns(tmp_path, make_run):
    for gap in (0.0, 0.3):
        for seed in (0, 1):
            make_run(
                tmp_path / "runs" / f"g{gap}_s{seed}", gap=gap, seed=seed, linear=80 + gap + seed
            )
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    assert "| gap Δ |" in text
    assert "| byol | synccp | unstructured | 0.1 | 0 | 2 |" in text
    assert "| byol | synccp | unstructured | 0.1 | 0.3 | 2 |" in text


def test_plots_are_real_images(study_report):
    _, out = study_report
    for name in PLOTS:
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as image:
            assert image.width >= 800 and image.height >= 400, name
            colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
            assert colors is None or len(colors) > 50, name  # more than a blank canvas


def test_full_study_report(study_report, study):
    md, out = study_report
    text = md.read_text()
    rows = _csv(out / "results.csv")
    assert len(rows) == len(find_run_dirs([study])) == 68
    assert {r["granularity"] for r in rows} == {"dense", "unstructured", "nm 2:4", "block 4x4"}
    results, baseline = text.split("## Results")[1].split("## Baseline")
    baseline, claims = baseline.split("## Plots")[0].split("## Claims, paired by seed")
    for section in (results, baseline):  # results, then vs raw pixels
        table = [
            line
            for line in section.splitlines()
            if line.startswith("| byol |") or line.startswith("| simclr |")
        ]
        assert len(table) == 34 and all("| 2 |" in line for line in table)
    assert "| byol | unstructured | synccp − granet | 2 |" in claims  # two seeds: waiting
    assert "Not drawn" not in text


def test_unfinished_runs_are_listed_not_tabled_and_missing_cost_is_explained(tmp_path, make_run):
    make_run(tmp_path / "runs" / "done", cost=False)
    make_run(tmp_path / "runs" / "half", finished=False)
    make_run(tmp_path / "runs" / "noeval", evaluated=False, cost=False)
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    assert "## Unfinished runs" in text and "half" in text.split("## Unfinished runs")[1]
    assert "_Not drawn: no cost.json" in text
    rows = _csv(tmp_path / "out" / "results.csv")
    assert len(rows) == 2 and {r["linear_top1"] for r in rows} == {"82.0", ""}


def test_inputs_can_be_run_dirs_or_folders(tmp_path, make_run):
    one = make_run(tmp_path / "a" / "deep" / "one")
    two = make_run(tmp_path / "b")
    assert find_run_dirs([tmp_path / "a", two, one]) == [one, two]
    with pytest.raises(ReportError, match="does not exist"):
        find_run_dirs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no finished run"):
        build_report([tmp_path / "empty"], tmp_path / "out")


def test_revival_rate_is_derived_from_flip_rate_and_densities_for_older_logs():
    from synccp.results.report import _metric

    # |A| = 0.5 N, |B| = 0.4 N; prune-only: |A∩B| = |B| → flip = 0.1/0.5 = 0.2, revival 0
    before = {"density": {"online": {"total": 0.5}}}
    pruned = {
        "density": {"online": {"total": 0.4}},
        "oscillation": {"online": {"total": {"flip_rate": 0.2}}},
    }
    assert abs(_metric(pruned, before, "online", "revival_rate")) < 1e-12
    # drop 0.15 N, grow 0.05 N: |A∩B| = 0.35 N, △ = 0.15 + 0.05 → flip 0.4, revival 0.05/0.4
    swapped = {
        "density": {"online": {"total": 0.4}},
        "oscillation": {"online": {"total": {"flip_rate": 0.4}}},
    }
    assert abs(_metric(swapped, before, "online", "revival_rate") - 0.125) < 1e-12
    logged = {"oscillation": {"online": {"total": {"revival_rate": 0.3}}}}
    assert _metric(logged, before, "online", "revival_rate") == 0.3


def test_loaded_runs_carry_revival_rates_for_curves_even_from_older_logs(tmp_path, make_run):
    run = make_run(
        tmp_path / "granet", algorithm="granet"
    )  # its log has flip rates, no revival rates
    assert "revival_rate" not in (run / "metrics.jsonl").read_text()
    updates = load_run(run).updates
    derived = [u["oscillation"]["online"]["total"]["revival_rate"] for u in updates[1:]]
    assert len(derived) == len(updates) - 1 and all(0.0 <= v <= 1.0 for v in derived)
    assert max(derived) > 0.0  # GraNet regrows
    assert "revival_rate" not in str(updates[0])  # nothing before the first update to compare with


def test_runs_written_by_an_older_version_group_with_todays(tmp_path, make_run):
    _seeds(tmp_path / "runs", make_run, [80.0, 82.0])
    older = tmp_path / "runs" / "synccp_s1" / "config.json"
    config = json.loads(older.read_text())
    del config["train"]["sync_bn"]  # added since
    del config["train"]["compile"]  # removed, then added again (default false)
    older.write_text(json.dumps(config))
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    assert "| byol | synccp | unstructured | 0.1 | 2 | 79.00 ± 1.41 | 81.00 ± 1.41 |" in text
    assert "sync_bn" not in text and "compile" not in text


def test_compiled_runs_are_kept_apart_from_eager_ones(tmp_path, make_run):
    _seeds(tmp_path / "runs", make_run, [80.0, 82.0])
    compiled = make_run(tmp_path / "runs" / "compiled_s0", seed=0, linear=70.0, knn=68.0)
    config = json.loads((compiled / "config.json").read_text())
    config["train"]["compile"] = True
    (compiled / "config.json").write_text(json.dumps(config))
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    assert "| compiled |" in text
    row = "| byol | synccp | unstructured | 0.1 | {} | {} |"
    assert row.format("False", "2 | 79.00 ± 1.41 | **81.00 ± 1.41**") in text
    assert row.format("True", "1 | 68.00 | 70.00") in text


def test_series_labels_name_only_the_settings_a_run_uses():
    from synccp.results.plots import series_label

    extras = ["sparsity.density_gap", "sparsity.sparse_branch"]
    synccp = {"algorithm": "synccp", "_key": {"sparsity.density_gap": 0.3}}
    sdclr = {"algorithm": "sdclr", "_key": {"sparsity.sparse_branch": "online"}}
    static = {"algorithm": "static", "_key": {}}
    assert series_label(synccp, extras) == "synccp, gap Δ=0.3"
    assert series_label(sdclr, extras) == "sdclr, sparse branch=online"
    assert series_label(static, extras) == "static" and series_label(static, []) == "static"
    default = {
        "algorithm": "synccp",
        "_key": {"sparsity.density_gap": 0.1, "train.precision": "auto"},
    }
    assert series_label(default, [*extras, "train.precision"]) == "synccp"  # defaults go unnamed


def test_csv_names_every_setting_that_varies(tmp_path, make_run):
    _seeds(tmp_path / "runs", make_run, [80.0, 81.0])
    bf16 = make_run(tmp_path / "runs" / "bf16", seed=0, linear=79.0)
    config = json.loads((bf16 / "config.json").read_text())
    config["train"]["precision"] = "bf16"
    (bf16 / "config.json").write_text(json.dumps(config))
    build_report([tmp_path / "runs"], tmp_path / "out")
    rows = {row["run"].split("/")[-1]: row for row in _csv(tmp_path / "out" / "results.csv")}
    assert (
        rows["bf16"]["train.precision"] == "bf16" and rows["synccp_s0"]["train.precision"] == "auto"
    )
    assert list(rows["bf16"])[: len(CSV_COLUMNS)] == list(CSV_COLUMNS)


def test_density_ticks_never_print_over_each_other():
    from synccp.results.plots import _spaced

    assert _spaced([0.05, 0.1, 0.2, 0.25, 0.5, 1.0]) == [0.05, 0.1, 0.25, 0.5, 1.0]
    assert _spaced([0.1]) == [0.1] and _spaced([]) == []


def test_setting_lines_show_every_value_a_method_ran_with():
    from synccp.results.tables import setting_lines

    rows = [
        {"method": m, "_key": {"train.lr": lr, "train.precision": p, "data.name": "fashion_mnist"}}
        for m, lr, p in (("byol", 1.0, "auto"), ("byol", 1.0, "bf16"), ("simclr", 0.4, "auto"))
    ]
    lines = setting_lines(rows)
    assert "`data.name=fashion_mnist`" in lines[0]
    assert "- byol: `train.lr=1`, `train.precision=auto / bf16`" in lines
    assert "- simclr: `train.lr=0.4`, `train.precision=auto`" in lines


def test_the_machine_of_each_run_is_read_from_its_sweep_record(tmp_path, make_run):
    """A run is exact per CPU and SIMD level: the report says which machine made each run and,
    when several did, that pairs across them differ by the machines too."""
    root = tmp_path / "runs"
    records = {"avx512": {"cpu": "AMD EPYC", "cpu_capability": "AVX512"},
               "older": {"cpu": "AMD EPYC"}}  # a sweep.json from before cpu_capability
    for seed, name in enumerate(("avx512", "older", "none")):
        make_run(root / name, seed=seed)
        if name in records:
            (root / name / "sweep.json").write_text(json.dumps({"wall_s": 1.0, **records[name]}))
    text = build_report([root], tmp_path / "out").read_text()
    rows = _csv(tmp_path / "out" / "results.csv")
    machine = {r["run"].rsplit("/", 1)[-1]: r["machine"] for r in rows}
    assert machine == {"avx512": "AMD EPYC (AVX512)",
                       "older": "AMD EPYC (SIMD level not recorded)", "none": ""}
    assert ("AMD EPYC (AVX512): 1 run; AMD EPYC (SIMD level not recorded): 1 run; "
            "no sweep record: 1 run.") in text

    one = tmp_path / "one"
    make_run(one / "a", seed=0)
    assert "Machines (" not in build_report([one], tmp_path / "out1").read_text()
