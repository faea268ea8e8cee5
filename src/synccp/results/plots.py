"""The report's PNG plots, drawn with matplotlib's object API (Agg; no pyplot global state).

Every function takes the report rows (see tables.py; `_run` holds the Run) and a target path, and
returns the path, or a short reason when there is nothing to draw. Colours follow the series
(algorithm, or the swept setting in ablations); markers follow the granularity.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from synccp.config import Config, config_to_dict
from synccp.results.tables import ALGORITHM_ORDER, TITLES, extra_columns, mean_std, ramp_window

ALGORITHM_COLORS = {"dense": "#444444", "static": "#8c564b", "gmp": "#ff7f0e", "sdclr": "#9467bd",
                    "rigl": "#d62728", "granet": "#2ca02c", "synccp": "#1f77b4"}
MARKERS = {"dense": "*", "unstructured": "o", "nm": "s", "block": "D", "channel": "^"}
LINESTYLES = ("-", "--", "-.", ":", (0, (6, 1.5, 1, 1.5, 1, 1.5)), (0, (1, 1)))
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#9edae5", "#dbdb8d", "#393b79")  # tab10 then tab20's light shades: 20 series


def _kind(row: dict) -> str:
    return row["granularity"].split()[0]


CONFIG_DEFAULTS = {f"{section}.{key}": value for section, table in config_to_dict(Config()).items()
            for key, value in table.items()}


def series_label(row: dict, extras: list[str]) -> str:
    """`synccp`, or `synccp, gap Δ=0.3` when other settings vary between runs of a method: only
    settings that differ from the config default are named (keys the run's algorithm ignores,
    absent from its study key, never are)."""
    parts = [f"{TITLES.get(k, k)}={row['_key'][k]}" for k in extras
             if k in row["_key"] and row["_key"][k] != CONFIG_DEFAULTS.get(k)]
    return ", ".join([row["algorithm"], *parts])


def _colors(labels: list[str]) -> dict[str, str]:
    if all(label in ALGORITHM_COLORS for label in labels):
        return {label: ALGORITHM_COLORS[label] for label in labels}
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def _order(label: str) -> tuple:
    algorithm = label.split(",")[0]
    return (ALGORITHM_ORDER.index(algorithm) if algorithm in ALGORITHM_ORDER else 99, label)


def _panels(count: int, rows: int = 1, *, width: float = 4.6, height: float = 3.6):
    figure = Figure(figsize=(max(width * count, 7.5), height * rows + 1.0), layout="constrained")
    axes = figure.subplots(rows, count, squeeze=False)
    return figure, axes


def _legend(figure: Figure, colors: dict[str, str], kinds: list[str], *, title: str,
            lines: tuple[str, ...] = (), styles: dict[str, Any] | None = None) -> None:
    """Colour (and line style) per series, marker per granularity, and the reference lines drawn."""
    styles = styles or {}
    handles = [Line2D([], [], color=c, marker=MARKERS["dense"] if l == "dense" else "o",
                      linestyle=styles.get(l, "-"), label=l) for l, c in colors.items()]
    if len([k for k in kinds if k != "dense"]) > 1:
        handles += [Line2D([], [], color="#555555", marker=MARKERS.get(k, "o"), linestyle="none",
                           label=f"granularity: {k}") for k in kinds if k != "dense"]
    styles = {"dense": dict(color=ALGORITHM_COLORS["dense"], linestyle="--"),
              "raw pixels": dict(color="#999999", linestyle=":", linewidth=1.5)}
    handles += [Line2D([], [], label=f"{name} (reference)", **styles[name]) for name in lines]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5),
                  title=title, fontsize=9, frameon=False)


def _kinds(rows: list[dict]) -> list[str]:
    order = list(MARKERS)
    return sorted({_kind(r) for r in rows}, key=lambda k: order.index(k) if k in order else 99)


def _jitter(index: int, count: int) -> float:
    """Multiplicative x offset that keeps series at the same density apart on a log axis."""
    return 1.0 + 0.03 * (index - (count - 1) / 2)


def _by_method(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["method"]):
        groups[row["method"]].append(row)
    return dict(groups)


def _points(rows: list[dict], x_field: str, y_field: str) -> list[tuple[float, float, float]]:
    """(x mean, y mean, y std) per configuration (seeds averaged), sorted by x."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[repr(sorted(row["_key"].items()))].append(row)
    points = []
    for group in groups.values():
        x, y = mean_std(r[x_field] for r in group), mean_std(r[y_field] for r in group)
        if x is not None and y is not None:
            points.append((x[0], y[0], y[1]))
    return sorted(points)


def _spaced(ticks: list[float], factor: float = 1.3) -> list[float]:
    """Log-axis ticks at least `factor` apart (0.2 and 0.25 would print over each other); the
    largest (1 = dense) is always kept."""
    kept: list[float] = []
    for tick in reversed(ticks):
        if not kept or kept[-1] / tick >= factor:
            kept.append(tick)
    return kept[::-1]


def accuracy_vs_density(rows: list[dict], path: Path) -> Path | str:
    """kNN and linear accuracy against the exported encoder's density, one panel per method."""
    sparse = [r for r in rows if r["algorithm"] != "dense" and r["final_online_density"] is not None]
    if not sparse:
        return "no sparse runs"
    extras = [k for k in extra_columns(rows) if k != "sparsity.density"]
    labels = sorted({series_label(r, extras) for r in sparse}, key=_order)
    colors, kinds = _colors(labels), _kinds(sparse)
    methods = _by_method(rows)
    ticks = _spaced(sorted({round(r["final_online_density"], 3) for r in sparse}))
    figure, axes = _panels(len(methods), 2)
    for col, (method, group) in enumerate(methods.items()):
        for row_index, (field, name) in enumerate((("knn_top1", "kNN"), ("linear_top1", "linear"))):
            ax = axes[row_index][col]
            for index, label in enumerate(labels):
                for kind in kinds:
                    chosen = [r for r in group if r["algorithm"] != "dense" and _kind(r) == kind
                              and series_label(r, extras) == label]
                    points = _points(chosen, "final_online_density", field)
                    if points:
                        xs, ys, es = zip(*points)
                        xs = [x * _jitter(index, len(labels)) for x in xs]
                        ax.errorbar(xs, ys, yerr=es, color=colors[label], marker=MARKERS.get(kind, "o"),
                                    capsize=3, linewidth=1.5, markersize=6)
            _reference_lines(ax, group, field)
            ax.set_xscale("log")
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=9)
            ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
            ax.minorticks_off()
            ax.set_title(f"{method}: {name} probe")
            ax.set_xlabel("encoder density (log; 0.1 = 90% sparse)")
            ax.set_ylabel(f"{name} top-1 (%)")
            ax.grid(alpha=0.3)
    _legend(figure, colors, kinds, title="mean ± std over seeds", lines=_reference_names(rows))
    figure.suptitle("Accuracy vs density")
    figure.savefig(path, dpi=120)
    return path


def _reference_lines(ax, group: list[dict], field: str) -> None:
    dense = mean_std(r[field] for r in group if r["algorithm"] == "dense")
    if dense is not None:
        ax.axhline(dense[0], color=ALGORITHM_COLORS["dense"], linestyle="--", linewidth=1.2)
    raw = mean_std(r[f"raw_{field}"] for r in group)
    if raw is not None:
        ax.axhline(raw[0], color="#999999", linestyle=":", linewidth=1.5)


def _reference_names(rows: list[dict]) -> tuple[str, ...]:
    """The reference lines present in these runs: a dense run, the raw-pixel baseline."""
    present = {"dense": any(r["algorithm"] == "dense" for r in rows),
               "raw pixels": any(r["raw_linear_top1"] is not None for r in rows)}
    return tuple(name for name, found in present.items() if found)


def reference_rows(rows: list[dict], *, moving: bool = True) -> tuple[list[dict], str]:
    """The runs of one sparsity setting for the per-run plots: unstructured if present, then the
    density closest to 0.1; with `moving`, only runs whose masks changed after step 0."""
    moving = [r for r in rows if r["algorithm"] != "dense" and (len(r["_run"].updates) > 1 or not moving)]
    if not moving:
        return [], ""
    settings = {(r["granularity"], r["density"]) for r in moving}
    chosen = min(settings, key=lambda s: (s[0] != "unstructured", abs(s[1] - 0.1), s))
    return [r for r in moving if (r["granularity"], r["density"]) == chosen], \
        f"{chosen[0]}, density {chosen[1]:g}"


def _curve_mean(rows: list[dict], keys: tuple[str, ...]) -> tuple[list[float], list[float], list[float]]:
    """Epoch, mean and std over seeds of `keys` in the mask updates (step 0 excluded)."""
    by_step: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        for update in row["_run"].updates:
            value = update
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if update.get("step", 0) > 0 and value is not None:
                by_step[update["step"]].append((update["epoch"], value))
    epochs, means, stds = [], [], []
    for step in sorted(by_step):
        stats = mean_std(v for _, v in by_step[step])
        epochs.append(by_step[step][0][0])
        means.append(stats[0])
        stds.append(stats[1])
    return epochs, means, stds


def over_training(rows: list[dict], path: Path, *, panels: tuple[tuple[tuple[str, ...], str], ...],
                  title: str, log: bool = False, unit_range: bool = False) -> Path | str:
    """Mask-update metrics against epochs, mean ± std over seeds: a column per method and a row
    per (record keys, y label) in `panels`. Line styles differ per series, so curves that
    coincide (e.g. two pure-pruning schedules) stay visible."""
    selected, setting = reference_rows(rows)
    if not selected:
        return "no run whose masks change during training"
    extras = extra_columns(selected)
    labels = sorted({series_label(r, extras) for r in selected}, key=_order)
    colors = _colors(labels)
    styles = {label: LINESTYLES[i % len(LINESTYLES)] for i, label in enumerate(labels)}
    methods = _by_method(selected)
    figure, axes = _panels(len(methods), len(panels), height=3.2)
    for col, (method, group) in enumerate(methods.items()):
        for row_index, (keys, ylabel) in enumerate(panels):
            ax = axes[row_index][col]
            ax.axvspan(*ramp_window(group[0]["_run"].config), color="#000000", alpha=0.06, linewidth=0)
            for label in labels:
                epochs, means, stds = _curve_mean([r for r in group if series_label(r, extras) == label], keys)
                if epochs:
                    ax.plot(epochs, means, color=colors[label], linestyle=styles[label], linewidth=1.6,
                            marker=".", markersize=4)
                    ax.fill_between(epochs, [max(m - s, 0.0) for m, s in zip(means, stds)],
                                    [m + s for m, s in zip(means, stds)], color=colors[label], alpha=0.15)
            if log:  # zeros (no change) stay visible: linear below 1e-3, logarithmic above
                ax.set_yscale("symlog", linthresh=1e-3, linscale=0.5)
                ax.set_ylim(bottom=0)
            if unit_range:
                ax.set_ylim(0, 1.03)
            ax.set_title(f"{method} ({setting})")
            ax.set_xlabel("epoch (shaded: density ramp)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
    _legend(figure, colors, [], title="mean over seeds, band: ± std", styles=styles)
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    return path


def layer_density(rows: list[dict], path: Path) -> Path | str:
    """Final per-layer density of both branches for one run (lowest seed) per series."""
    selected, setting = reference_rows(rows, moving=False)
    selected = [r for r in selected if r["_run"].summary.get("sparsity", {}).get("online", {}).get("layers")]
    if not selected:
        return "no per-layer densities in summary.json"
    method = sorted({r["method"] for r in selected})[0]
    extras = extra_columns(selected)
    picks: dict[str, dict] = {}
    for row in sorted((r for r in selected if r["method"] == method), key=lambda r: r["seed"]):
        picks.setdefault(series_label(row, extras), row)
    labels = sorted(picks, key=_order)
    colors = _colors(labels)
    figure = Figure(figsize=(12, 2.1 * len(labels) + 1.6), layout="constrained")
    axes = figure.subplots(len(labels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, label in zip(axes, labels):
        sparsity = picks[label]["_run"].summary["sparsity"]
        names = list(sparsity["online"]["layers"])
        second = (sparsity.get("second") or {}).get("layers") or {}
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [sparsity["online"]["layers"][n] for n in names], width=0.4,
               color=colors[label], label="online")
        ax.bar([x + 0.2 for x in xs], [second.get(n, 0.0) for n in names], width=0.4, fill=False,
               edgecolor=colors[label], hatch="///", label="second branch")
        ax.axhline(picks[label]["density"], color="#333333", linestyle="--", linewidth=1)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("density")
        ax.set_title(f"{label}  (seed {picks[label]['seed']})", fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    figure.legend(handles=[Patch(facecolor="#777777", label="online branch"),
                           Patch(fill=False, edgecolor="#777777", hatch="///", label="second branch"),
                           Line2D([], [], color="#333333", linestyle="--", label="target density (online)")],
                  loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    axes[-1].set_xticks(list(xs), [n.removesuffix(".weight") for n in names], rotation=60, ha="right", fontsize=8)
    figure.suptitle(f"Final per-layer density, {method} ({setting})")
    figure.savefig(path, dpi=120)
    return path


def accuracy_vs_cost(rows: list[dict], path: Path) -> Path | str:
    """Linear accuracy against modeled training FLOPs (fraction of dense), one panel per method."""
    costed = [r for r in rows if r["train_flops_ratio"] is not None and r["linear_top1"] is not None]
    if not costed:
        return "no cost.json with totals.dense_macs / totals.sparse_macs in these runs"
    extras = [k for k in extra_columns(rows) if k != "sparsity.density"]
    labels = sorted({series_label(r, extras) for r in costed}, key=_order)
    colors, kinds = _colors(labels), _kinds(costed)
    methods = _by_method(costed)
    figure, axes = _panels(len(methods))
    for ax, (method, group) in zip(axes[0], methods.items()):
        for label in labels:
            for kind in kinds:
                chosen = [r for r in group if _kind(r) == kind and series_label(r, extras) == label]
                for x, y, e in _points(chosen, "train_flops_ratio", "linear_top1"):
                    ax.errorbar([x], [y], yerr=[e], color=colors[label], marker=MARKERS.get(kind, "o"),
                                capsize=3, markersize=7, linestyle="none")
        raw = mean_std(r["raw_linear_top1"] for r in group)
        if raw is not None:
            ax.axhline(raw[0], color="#999999", linestyle=":", linewidth=1.5)
        ax.set_title(method)
        ax.set_xlabel("modeled training FLOPs (fraction of dense)")
        ax.set_ylabel("linear top-1 (%)")
        ax.grid(alpha=0.3)
    _legend(figure, colors, kinds, title="mean ± std over seeds",
            lines=tuple(n for n in _reference_names(rows) if n != "dense"))
    figure.suptitle("Accuracy vs modeled training cost")
    figure.savefig(path, dpi=120)
    return path


def make_plots(rows: list[dict], out: Path) -> dict[str, Path | str]:
    """Draw every plot into `out`; title -> PNG path, or the reason it was not drawn."""
    return {
        "Accuracy vs density": accuracy_vs_density(rows, out / "accuracy_vs_density.png"),
        "Flip rate over training": over_training(
            rows, out / "flip_rate.png", log=True,
            panels=((("oscillation", "online", "total", "flip_rate"), "online flip rate |A △ B| / |A|"),
                    (("oscillation", "second", "total", "flip_rate"), "second-branch flip rate"),
                    (("oscillation", "online", "total", "revival_rate"), "online revival rate |B \\ A| / |B|")),
            title="Architecture oscillation: flip rate and revival (regrowth) rate at each mask update"),
        "Online-vs-second IoU over training": over_training(
            rows, out / "online_second_iou.png",
            panels=((("oscillation", "online_vs_second_iou", "total"), "IoU(online mask, second mask)"),),
            unit_range=True,
            title="Agreement of the two branches' masks over training"),
        "Per-layer final density": layer_density(rows, out / "layer_density.png"),
        "Accuracy vs modeled training cost": accuracy_vs_cost(rows, out / "accuracy_vs_cost.png"),
    }
