"""The report's PNG plots, drawn with matplotlib's object API (Agg; no pyplot global state).

Every `draw_*` function takes the report rows (see tables.py; `_run` holds the Run) and returns a
Figure, or a short reason when there is nothing to draw. Colour and marker follow the algorithm
(results/palette.py, the same in every figure), marker fill the granularity; only panels that
hold data are drawn (a method without sparse runs gets no accuracy-vs-density panel).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from synccp import rundir
from synccp.results.palette import FILLS, REFERENCE, series_styles
from synccp.results.plot_layout import RC, _jitter, _spaced, legend, legend_rows, panels, save
from synccp.results.tables import ALGORITHM_ORDER, TITLES, extra_columns, mean_std, ramp_window

CONFIG_DEFAULTS = {f"{section}.{key}": value for section, table in rundir.default_record().items()
                   for key, value in table.items()}
FLIP_PANELS = ((("oscillation", "online", "total", "flip_rate"), "online flip rate |A △ B| / |A|"),
               (("oscillation", "second", "total", "flip_rate"), "second-branch flip rate"),
               (("oscillation", "online", "total", "revival_rate"),
                "online revival |B \\ A| / |B|"))
IOU_PANELS = ((("oscillation", "online_vs_second_iou", "total"), "IoU(online, second mask)"),)


def _kind(row: dict) -> str:
    return row["granularity"].split()[0]


def series_label(row: dict, extras: list[str]) -> str:
    """`synccp`, or `synccp, gap Δ=0.3` when other settings vary between runs of a method: only
    settings that differ from the config default are named (keys the run's algorithm ignores,
    absent from its study key, never are)."""
    parts = [f"{TITLES.get(k, k)}={row['_key'][k]}" for k in extras
             if k in row["_key"] and row["_key"][k] != CONFIG_DEFAULTS.get(k)]
    return ", ".join([row["algorithm"], *parts])


def _order(label: str) -> tuple:
    algorithm = label.split(",")[0]
    return (ALGORITHM_ORDER.index(algorithm) if algorithm in ALGORITHM_ORDER else 99, label)


def _kinds(rows: list[dict]) -> list[str]:
    order = list(FILLS)
    return sorted({_kind(r) for r in rows}, key=lambda k: order.index(k) if k in order else 99)


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


def _reference_lines(ax, group: list[dict], field: str) -> None:
    dense = mean_std(r[field] for r in group if r["algorithm"] == "dense")
    if dense is not None:
        ax.axhline(dense[0], **REFERENCE["dense"])
    raw = mean_std(r.get(f"raw_{field}") for r in group)
    if raw is not None:
        ax.axhline(raw[0], **REFERENCE["raw pixels"])


def _reference_names(rows: list[dict]) -> tuple[str, ...]:
    """The reference lines present in these runs: a dense run, the raw-pixel baseline."""
    present = {"dense": any(r["algorithm"] == "dense" for r in rows),
               "raw pixels": any(r.get("raw_linear_top1") is not None for r in rows)}
    return tuple(name for name, found in present.items() if found)


def _series(rows: list[dict], extras: list[str]) -> dict[str, dict]:
    return series_styles(sorted({series_label(r, extras) for r in rows}, key=_order))


def _errorbars(ax, rows: list[dict], series: dict, extras: list[str], kinds: list[str],
               x_field: str, y_field: str, *, jitter: bool, connect: bool) -> None:
    for index, (label, look) in enumerate(series.items()):
        for kind in kinds:
            chosen = [r for r in rows if _kind(r) == kind and series_label(r, extras) == label]
            points = _points(chosen, x_field, y_field)
            if not points:
                continue
            xs, ys, es = zip(*points, strict=True)
            if jitter:
                xs = [x * _jitter(index, len(series)) for x in xs]
            ax.errorbar(xs, ys, yerr=es, color=look["color"], marker=look["marker"],
                        fillstyle=FILLS.get(kind, "full"), markersize=7, capsize=3, linewidth=1.5,
                        linestyle=look["linestyle"] if connect else "none")


def draw_accuracy_vs_density(rows: list[dict]) -> Figure | str:
    """kNN and linear accuracy against the exported encoder's density, per method (sparse runs)."""
    sparse = [r for r in rows
              if r["algorithm"] != "dense" and r["final_online_density"] is not None]
    if not sparse:
        return "no sparse runs"
    extras = [k for k in extra_columns(rows) if k != "sparsity.density"]
    series, kinds = _series(sparse, extras), _kinds(sparse)
    methods = {m: g for m, g in _by_method(rows).items() if any(r in sparse for r in g)}
    ticks = _spaced(sorted({round(r["final_online_density"], 3) for r in sparse}))
    cells = [(m, f) for m in methods for f in (("knn_top1", "kNN"), ("linear_top1", "linear"))
             if any(r[f[0]] is not None for r in methods[m] if r in sparse)]
    if not cells:
        return "no probe results (eval.json) of sparse runs"
    figure, axes = panels(len(cells),
                          columns=2 if len(methods) == 1 else 4 if len(cells) >= 8 else 2,
                          legend_rows=legend_rows(len(series) + len(kinds) + 2))
    for ax, (method, (field, name)) in zip(axes, cells, strict=False):
        group = methods[method]
        _errorbars(ax, [r for r in group if r in sparse], series, extras, kinds,
                   "final_online_density", field, jitter=True, connect=True)
        _reference_lines(ax, group, field)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
        ax.minorticks_off()
        ax.set(title=f"{method}: {name} probe", xlabel="encoder density (log)",
               ylabel=f"{name} top-1 (%)")
        ax.grid(alpha=0.3)
    legend(figure, series, kinds=kinds, lines=_reference_names(rows), show_lines=True,
           title="mean ± std over seeds; density 0.1 = 90% sparse")
    figure.suptitle("Accuracy vs density")
    return figure


def reference_rows(rows: list[dict], *, moving: bool = True) -> tuple[list[dict], str]:
    """The runs of one sparsity setting for the per-run plots: unstructured if present, then the
    density closest to 0.1; with `moving`, only runs whose masks changed after step 0."""
    moving = [r for r in rows
              if r["algorithm"] != "dense" and (len(r["_run"].updates) > 1 or not moving)]
    if not moving:
        return [], ""
    settings = {(r["granularity"], r["density"]) for r in moving}
    chosen = min(settings, key=lambda s: (s[0] != "unstructured", abs(s[1] - 0.1), s))
    return [r for r in moving if (r["granularity"], r["density"]) == chosen], \
        f"{chosen[0]}, density {chosen[1]:g}"


def _curve_mean(rows: list[dict],
                keys: tuple[str, ...]) -> tuple[list[float], list[float], list[float]]:
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


def draw_over_training(rows: list[dict], *, panels_spec, title: str, log: bool = False,
                       unit_range: bool = False) -> Figure | str:
    """Mask-update metrics against epochs, mean ± std over seeds: one panel per (method, metric)
    that has data; line style and lightness tell variants of one algorithm apart."""
    selected, setting = reference_rows(rows)
    if not selected:
        return "no run whose masks change during training"
    extras = extra_columns(selected)
    series = _series(selected, extras)
    cells = []  # (method, group, keys, ylabel, curves)
    for method, group in _by_method(selected).items():
        for keys, ylabel in panels_spec:
            curves = {label: _curve_mean([r for r in group if series_label(r, extras) == label],
                                         keys)
                      for label in series}
            curves = {label: c for label, c in curves.items() if c[0]}
            if curves:
                cells.append((method, group, ylabel, curves))
    if not cells:
        return "no run records these metrics"
    figure, axes = panels(len(cells), legend_rows=legend_rows(len(series)))
    for ax, (method, group, ylabel, curves) in zip(axes, cells, strict=False):
        ax.axvspan(*ramp_window(group[0]["_run"].config), color="#000000", alpha=0.06, linewidth=0)
        for label, (epochs, means, stds) in curves.items():
            look = series[label]
            ax.plot(epochs, means, color=look["color"], linestyle=look["linestyle"], linewidth=1.7,
                    marker=look["marker"], markersize=4)
            ax.fill_between(epochs, [max(m - s, 0.0) for m, s in zip(means, stds, strict=True)],
                            [m + s for m, s in zip(means, stds, strict=True)], color=look["color"],
                            alpha=0.15)
        if log:  # zeros (no change) stay visible: linear below 1e-3, logarithmic above
            ax.set_yscale("symlog", linthresh=1e-3, linscale=0.5)
            ax.set_ylim(bottom=0)
        if unit_range:
            ax.set_ylim(0, 1.03)
        ax.set(title=f"{method}: {ylabel}", xlabel="epoch (shaded: density ramp)")
        ax.grid(alpha=0.3)
    legend(figure, series, title="mean over seeds, band: ± std", show_lines=True)
    figure.suptitle(f"{title} ({setting})")
    return figure


def draw_layer_density(rows: list[dict]) -> Figure | str:
    """Final per-layer density of both branches for one run (lowest seed) per series."""
    selected, setting = reference_rows(rows, moving=False)
    selected = [r for r in selected
                if r["_run"].summary.get("sparsity", {}).get("online", {}).get("layers")]
    if not selected:
        return "no per-layer densities in summary.json"
    method = sorted({r["method"] for r in selected})[0]
    extras = extra_columns(selected)
    picks: dict[str, dict] = {}
    for row in sorted((r for r in selected if r["method"] == method), key=lambda r: r["seed"]):
        picks.setdefault(series_label(row, extras), row)
    series = series_styles(sorted(picks, key=_order))
    figure = Figure(figsize=(12, 1.9 * len(series) + 2.2), layout="constrained")
    axes = figure.subplots(len(series), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, look) in zip(axes, series.items(), strict=False):
        sparsity = picks[label]["_run"].summary["sparsity"]
        names = list(sparsity["online"]["layers"])
        second = (sparsity.get("second") or {}).get("layers") or {}
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [sparsity["online"]["layers"][n] for n in names], width=0.4,
               color=look["color"])
        ax.bar([x + 0.2 for x in xs], [second.get(n, 0.0) for n in names], width=0.4, fill=False,
               edgecolor=look["color"], hatch="///")
        ax.axhline(picks[label]["density"], color="#333333", linestyle="--", linewidth=1)
        ax.set(ylim=(0, 1.05), ylabel="density")
        ax.set_title(f"{label}  (seed {picks[label]['seed']})", loc="left")
        ax.grid(axis="y", alpha=0.3)
    figure.legend(handles=[Patch(facecolor="#777777", label="online branch"),
                           Patch(fill=False, edgecolor="#777777", hatch="///",
                                 label="second branch"),
                           Line2D([], [], color="#333333", linestyle="--",
                                  label="target density (online)")],
                  loc="outside lower center", ncols=3, frameon=False)
    axes[-1].set_xticks(list(xs), [n.removesuffix(".weight") for n in names], rotation=60,
                        ha="right",
                        fontsize=9)
    figure.suptitle(f"Final per-layer density, {method} ({setting})")
    return figure


def draw_accuracy_vs_cost(rows: list[dict]) -> Figure | str:
    """Linear accuracy against modeled training FLOPs (fraction of dense), one panel per method."""
    costed = [r for r in rows
              if r["train_flops_ratio"] is not None and r["linear_top1"] is not None]
    if not costed:
        return "no cost.json with totals.dense_macs / totals.sparse_macs in these runs"
    extras = [k for k in extra_columns(rows) if k != "sparsity.density"]
    series, kinds = _series(costed, extras), _kinds(costed)
    methods = _by_method(costed)
    figure, axes = panels(len(methods), legend_rows=legend_rows(len(series) + len(kinds) + 1))
    for ax, (method, group) in zip(axes, methods.items(), strict=False):
        _errorbars(ax, group, series, extras, kinds, "train_flops_ratio", "linear_top1",
                   jitter=False, connect=False)
        raw = mean_std(r.get("raw_linear_top1") for r in group)
        if raw is not None:
            ax.axhline(raw[0], **REFERENCE["raw pixels"])
        ax.set(title=method, xlabel="modeled training FLOPs (× dense)", ylabel="linear top-1 (%)")
        ax.grid(alpha=0.3)
    legend(figure, series, kinds=kinds, title="mean ± std over seeds",
           lines=tuple(n for n in _reference_names(rows) if n != "dense"))
    figure.suptitle("Accuracy vs modeled training cost")
    return figure


def draw_all(rows: list[dict]) -> dict[str, tuple[str, Figure | str]]:
    """title -> (file name, Figure or the reason it was not drawn)."""
    return {
        "Accuracy vs density": ("accuracy_vs_density.png", draw_accuracy_vs_density(rows)),
        "Flip rate over training": ("flip_rate.png", draw_over_training(
            rows, panels_spec=FLIP_PANELS, log=True,
            title="Architecture oscillation: flip and revival rate per mask update")),
        "Online-vs-second IoU over training": ("online_second_iou.png", draw_over_training(
            rows, panels_spec=IOU_PANELS, unit_range=True,
            title="Agreement of the two branches' masks")),
        "Per-layer final density": ("layer_density.png", draw_layer_density(rows)),
        "Accuracy vs modeled training cost": ("accuracy_vs_cost.png", draw_accuracy_vs_cost(rows)),
    }


def make_plots(rows: list[dict], out: Path) -> dict[str, Path | str]:
    """Draw every plot into `out`; title -> PNG path, or the reason it was not drawn."""
    with matplotlib.rc_context(RC):  # fonts are resolved while drawing and saving
        return {title: save(figure, Path(out) / name)
                for title, (name, figure) in draw_all(rows).items()}
