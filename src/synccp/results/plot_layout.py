"""Figure layout shared by the report's plots: panels that hold data only, readable text, legends.

Panels flow in at most `MAX_COLUMNS` columns (4 in × 3.2 in each, saved at 100 dpi: a figure is
at most ~1,250 px wide, so 11-pt text reads at 100%); grid cells past the last panel are hidden,
never drawn as empty axes.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from synccp.results.palette import FILLS, REFERENCE, display

MAX_COLUMNS = 3
PANEL = (4.1, 3.2)  # inches per panel
DPI = 100
RC = {"font.size": 11, "axes.titlesize": 11.5, "axes.labelsize": 11, "xtick.labelsize": 10,
      "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10.5,
      "figure.titlesize": 13}


def panels(count: int, *, columns: int = MAX_COLUMNS, panel: tuple[float, float] = PANEL,
           legend_rows: int = 2) -> tuple[Figure, list]:
    """A figure with `count` visible axes (row-major) and room for a legend below."""
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    figure = Figure(
        figsize=(max(panel[0] * columns, 7.0), panel[1] * rows + 0.9 + 0.28 * legend_rows),
        layout="constrained",
    )
    grid = figure.subplots(rows, columns, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, axes[:count]


def legend(
    figure: Figure,
    series: dict[str, dict],
    *,
    title: str,
    kinds: list[str] = (),
    lines: tuple[str, ...] = (),
    show_lines: bool = False,
) -> None:
    """Colour/marker (and line style) per series, marker fill per granularity, reference lines."""
    handles = [
        Line2D(
            [],
            [],
            color=s["color"],
            marker=s["marker"],
            markersize=7,
            linestyle=s["linestyle"] if show_lines else "none",
            label=display(label),
        )
        for label, s in series.items()
    ]
    if len([k for k in kinds if k != "dense"]) > 1:
        handles += [
            Line2D(
                [],
                [],
                color="#555555",
                marker="o",
                fillstyle=FILLS.get(k, "full"),
                markersize=7,
                linestyle="none",
                label=f"granularity: {k}",
            )
            for k in kinds
            if k != "dense"
        ]
    handles += [Line2D([], [], label=f"{name} (reference)", **REFERENCE[name]) for name in lines]
    columns = min(len(handles), 4)
    figure.legend(
        handles=handles, loc="outside lower center", ncols=columns, title=title, frameon=False
    )


def legend_rows(entries: int) -> int:
    return math.ceil(entries / 4) + 1


def save(figure: Figure | str, path: Path) -> Path | str:
    """Write `figure` (or pass a reason through) and return the path."""
    if isinstance(figure, str):
        return figure
    figure.savefig(path, dpi=DPI)
    return path


def _spaced(ticks: list[float], factor: float = 1.3) -> list[float]:
    """Log-axis ticks at least `factor` apart (0.2 and 0.25 would print over each other); the
    largest (1 = dense) is always kept."""
    kept: list[float] = []
    for tick in reversed(ticks):
        if not kept or kept[-1] / tick >= factor:
            kept.append(tick)
    return kept[::-1]


def _jitter(index: int, count: int) -> float:
    """Multiplicative x offset that keeps series at the same density apart on a log axis."""
    return 1.0 + 0.03 * (index - (count - 1) / 2)
