"""One run's metrics.jsonl as a CSV and the standard training curves (`synccp report DIR`).

The CSV has one row per record (train and mask_update), with the same flattened names the live
loggers use (``train/loss``, ``mask_update/density/online/total``); per-layer tables stay in
metrics.jsonl.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from synccp import rundir
from synccp.results.loggers import scalars
from synccp.results.palette import STYLES
from synccp.results.plot_layout import DPI, RC, panels

METRICS_CSV, CURVES_PNG = "metrics.csv", "training_curves.png"
CURVES = (
    ("train/loss", "loss"),
    ("train/lr", "learning rate"),
    ("train/images_per_s", "images / s"),
    (("mask_update/density/online/total", "mask_update/density/second/total"), "density"),
    (
        (
            "mask_update/oscillation/online/total/flip_rate",
            "mask_update/oscillation/second/total/flip_rate",
        ),
        "flip rate |A △ B| / |A|",
    ),
)


def metrics_table(run_dir: str | Path) -> list[dict]:
    """One dict per record of metrics.jsonl: kind, step, then the flattened scalars."""
    return [
        {"kind": r.get("kind"), "step": r.get("step"), **scalars(r)}
        for r in rundir.read_metrics(run_dir)
    ]


def write_metrics_csv(table: list[dict], path: Path) -> Path:
    columns = list(dict.fromkeys(key for row in table for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return path


def draw_curves(table: list[dict], *, algorithm: str, title: str) -> Figure | str:
    """Loss, LR, throughput, both branches' density and flip rate against the step; only the
    curves this run recorded (a dense run has no flip rate)."""
    cells = []
    for tags, ylabel in CURVES:
        tags = (tags,) if isinstance(tags, str) else tags
        series = {
            tag: [(r["step"], r[tag]) for r in table if r.get(tag) is not None] for tag in tags
        }
        series = {tag: points for tag, points in series.items() if len(points) > 1}
        if series:
            cells.append((ylabel, series))
    if not cells:
        return "fewer than two records of any metric"
    color = STYLES.get(algorithm, STYLES["synccp"]).color
    figure, axes = panels(len(cells), legend_rows=0)
    for ax, (ylabel, series) in zip(axes, cells, strict=False):
        for index, (tag, points) in enumerate(series.items()):
            steps, values = zip(*points, strict=True)
            branch = "second" if "/second/" in tag else "online"
            ax.plot(
                steps,
                values,
                color=color,
                linestyle="-" if index == 0 else "--",
                linewidth=1.7,
                marker=".",
                label=branch if len(series) > 1 else None,
            )
        if len(series) > 1:
            ax.legend(frameon=False)
        ax.set(title=ylabel, xlabel="optimizer step")
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    return figure


def run_report(run_dir: Path, out: Path) -> dict[str, Path | str]:
    """Write metrics.csv and training_curves.png of one run into `out`."""
    table = metrics_table(run_dir)
    config = rundir.read_json(Path(run_dir) / rundir.CONFIG)
    sparsity = config.get("sparsity", {})
    title = (
        f"{Path(run_dir).name}: {config.get('method', {}).get('name')}, "
        f"{sparsity.get('algorithm')}/{sparsity.get('granularity')}"
    )
    result: dict[str, Path | str] = {
        "Metrics (CSV)": write_metrics_csv(table, Path(out) / METRICS_CSV)
    }
    with matplotlib.rc_context(RC):
        figure = draw_curves(table, algorithm=sparsity.get("algorithm", ""), title=title)
        if not isinstance(figure, str):
            figure.savefig(Path(out) / CURVES_PNG, dpi=DPI)
            figure = Path(out) / CURVES_PNG
    result["Training curves"] = figure
    return result
