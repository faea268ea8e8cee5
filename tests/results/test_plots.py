"""Figures: one colour and marker per algorithm everywhere, no empty panels, readable text."""

import matplotlib
import pytest
from matplotlib.colors import rgb_to_hsv, to_rgb

from synccp.results.palette import STYLES, display, series_styles
from synccp.results.plot_layout import DPI, RC
from synccp.results.plots import draw_all
from synccp.results.report import find_run_dirs, load_run, run_row
from synccp.results.tables import with_dense_differences
from synccp.sparsity.registry import ALGORITHMS


def test_palette_covers_every_algorithm_with_distinct_colours_and_markers():
    assert set(STYLES) == set(ALGORITHMS)
    assert len({s.color.lower() for s in STYLES.values()}) == len(STYLES)
    assert len({s.marker for s in STYLES.values()}) == len(STYLES)
    assert display("synccp, gap Δ=0.3") == "SyncCP, gap Δ=0.3"


def test_variants_keep_the_algorithm_hue_and_the_plain_one_its_exact_colour():
    looks = series_styles(["synccp", "synccp, gap Δ=0.0", "synccp, gap Δ=0.3", "gmp"])
    assert looks["synccp"]["color"].lower() == STYLES["synccp"].color.lower()
    hue = rgb_to_hsv(to_rgb(STYLES["synccp"].color))[0]
    for label in ("synccp, gap Δ=0.0", "synccp, gap Δ=0.3"):
        assert rgb_to_hsv(to_rgb(looks[label]["color"]))[0] == pytest.approx(hue, abs=0.01)
        assert looks[label]["marker"] == STYLES["synccp"].marker
    assert len({looks[k]["linestyle"] for k in looks if k.startswith("synccp")}) == 3


def _rows(root, make_run):
    for gap in (0.0, 0.3):  # an ablation beside the study: variants of one algorithm
        for seed in (0, 1):
            make_run(root / f"gap{gap}_s{seed}", algorithm="synccp", gap=gap, seed=seed)
    runs = [load_run(p) for p in find_run_dirs([root])]
    return with_dense_differences([run_row(r) for r in runs if r is not None])


@pytest.fixture(scope="module")
def figures(study, make_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    import shutil

    shutil.copytree(study, root / "study")
    with matplotlib.rc_context(RC):
        drawn = draw_all(_rows(root, make_run))
        yield {title: figure for title, (_, figure) in drawn.items()}


def test_every_figure_uses_the_palette_for_every_algorithm(figures):
    for title, figure in figures.items():
        assert not isinstance(figure, str), (title, figure)
        for legend in figure.legends:
            for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
                label = text.get_text()
                plain = {s.label: name for name, s in STYLES.items()}.get(label)
                if plain is not None:
                    assert handle.get_color().lower() == STYLES[plain].color.lower(), (title, label)
                    assert handle.get_marker() == STYLES[plain].marker, (title, label)


def test_no_visible_panel_is_empty_and_text_reads_at_100_percent(figures):
    for title, figure in figures.items():
        width_px = figure.get_figwidth() * DPI
        assert width_px <= 1300, title  # saved at 100 dpi: no 2,760-px canvases of tiny text
        for ax in figure.axes:
            if not ax.get_visible():
                continue
            # data, not decoration: reference lines (axhline) and the ramp shading do not count
            drawn = list(ax.containers) + [line for line in ax.lines if len(line.get_xdata()) > 2]
            assert drawn, (title, ax.get_title())
        figure.canvas.draw()
        sizes = [t.get_fontsize() for ax in figure.axes if ax.get_visible()
                 for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title, ax.xaxis.label)]
        assert min(sizes) >= 9, title


def test_report_of_one_run_writes_its_metrics_csv_and_training_curves(tmp_path, make_run):
    import csv

    from PIL import Image

    from synccp.results.report import build_report
    from synccp.rundir import read_metrics

    run = make_run(tmp_path / "runs" / "one", algorithm="granet")
    text = build_report([run], tmp_path / "out").read_text()
    with open(tmp_path / "out" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    records = read_metrics(run)
    assert [(r["kind"], int(r["step"])) for r in rows] == [(r["kind"], r["step"]) for r in records]
    losses = [float(r["train/loss"]) for r in rows if r["kind"] == "train"]
    assert losses == pytest.approx([r["loss"] for r in records if r["kind"] == "train"])
    with Image.open(tmp_path / "out" / "training_curves.png") as image:
        assert 800 <= image.width <= 1300
    assert (
        "![Training curves](training_curves.png)" in text and "[metrics.csv](metrics.csv)" in text
    )


def test_runs_without_probe_results_get_no_empty_accuracy_panels(tmp_path, make_run):
    from synccp.results.plots import draw_accuracy_vs_density

    run = make_run(tmp_path / "runs" / "noeval", evaluated=False)
    rows = with_dense_differences([run_row(load_run(run))])
    assert draw_accuracy_vs_density(rows) == "no probe results (eval.json) of sparse runs"


def test_report_flags_runs_probed_with_the_quick_protocol(tmp_path, make_run):
    import json

    from synccp.results.report import build_report

    run = make_run(tmp_path / "runs" / "quick")
    result = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**result, "protocol": "quick (eval.subset=2000)"}))
    make_run(tmp_path / "runs" / "full", seed=1)
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    assert "## Quick-protocol evaluations (eval.subset: not results)" in text
    assert (
        "quick (eval.subset=2000)" in text and "runs/full`" not in text.split("Quick-protocol")[1]
    )
