"""Report tables: `results.csv` (one row per run) and the markdown tables (mean ± std over seeds).

A row is a dict of `CSV_COLUMNS` plus `_key`: the run's configuration, flattened to `section.key`
and normalised (seed, paths and logging dropped; keys an algorithm ignores blanked), so that runs
differing only in their seed fall in one group.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from synccp.sparsity.registry import ALGORITHMS

CSV_COLUMNS = (
    "run", "method", "algorithm", "granularity", "density", "density_gap", "score_ema", "seed",
    "epochs", "width", "subset", "knn_top1", "linear_top1", "raw_knn_top1", "raw_linear_top1",
    "final_online_density", "final_second_density", "ramp_flip_rate", "ramp_flip_rate_second",
    "ramp_revival_rate", "final_online_second_iou", "train_flops_ratio", "modeled_speedup",
    "wall_s", "knn_vs_dense", "linear_vs_dense", "machine")

# (row field, column title, format, with ± std) of the aggregated table, after the identity
# columns; densities and costs are (nearly) the same for every seed, so only their mean is shown.
METRICS = (
    ("knn_top1", "kNN top-1 (%)", "{:.2f}", True),
    ("linear_top1", "linear top-1 (%)", "{:.2f}", True),
    ("knn_vs_dense", "kNN − dense, same seed", "{:+.2f}", True),
    ("linear_vs_dense", "linear − dense, same seed", "{:+.2f}", True),
    ("final_online_density", "online density", "{:.3f}", False),
    ("final_second_density", "second density", "{:.3f}", False),
    ("ramp_flip_rate", "flip rate (pruned branch)", "{:.4f}", True),
    ("ramp_revival_rate", "revival rate (pruned branch)", "{:.4f}", True),
    ("final_online_second_iou", "online–second IoU", "{:.3f}", False),
    ("train_flops_ratio", "train FLOPs (× dense)", "{:.3f}", False),
    ("modeled_speedup", "modeled speedup (×)", "{:.2f}", False),
)
IDENTITY = ("method", "algorithm", "granularity", "density")
IDENTITY_KEYS = {"method.name", "sparsity.algorithm", "sparsity.granularity", "sparsity.n",
                 "sparsity.m", "sparsity.block_out", "sparsity.block_in", "sparsity.density"}
TITLES = {"sparsity.density_gap": "gap Δ", "sparsity.score_ema": "score EMA β",
          "train.epochs": "epochs", "model.width": "width", "data.subset": "subset",
          "sparsity.sparse_branch": "sparse branch", "data.name": "data",
          "train.compile": "compiled"}
ALGORITHM_ORDER = ALGORITHMS  # the registry's order
GRANULARITY_ORDER = ("dense", "unstructured", "nm", "block", "channel")


def write_csv(rows: list[dict], path: Path) -> Path:
    """One line per run, `CSV_COLUMNS` in order, then every other config key that varies between
    runs of a method (`extra_columns`, named by the key, e.g. `train.precision`); missing values
    are empty cells."""
    extras = [k for k in extra_columns(rows) if k.split(".")[-1] not in CSV_COLUMNS]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=(*CSV_COLUMNS, *extras), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            line = {k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}
            line.update({k: row["_key"].get(k, "") for k in extras})
            writer.writerow(line)
    return path


def with_dense_differences(rows: list[dict]) -> list[dict]:
    """Rows with `knn_vs_dense` / `linear_vs_dense`: accuracy minus that of the dense run with the
    same seed and the same settings outside `sparsity.*` (None where there is none, and for dense).

    Runs of one seed share the initial weights, data order and augmentations, and in short
    schedules that shared start can move every algorithm's accuracy together (measured: BYOL at
    60 steps, docs/results.md), so a difference paired by seed has a far smaller spread than the
    difference of two means over seeds."""
    dense = {(outside_sparsity(r), r["seed"]): r for r in rows if r["algorithm"] == "dense"}
    out = []
    for row in rows:
        partner = (None if row["algorithm"] == "dense"
                   else dense.get((outside_sparsity(row), row["seed"])))
        out.append({**row, **{f"{probe}_vs_dense": _difference(row, partner, f"{probe}_top1")
                              for probe in ("knn", "linear")}})
    return out


def outside_sparsity(row: dict) -> str:
    return repr(sorted((k, repr(v)) for k, v in row["_key"].items()
                       if not k.startswith("sparsity.")))


def _difference(row: dict, partner: dict | None, field: str) -> float | None:
    return None if partner is None else _minus(row.get(field), partner.get(field))


def _minus(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int] | None:
    """Mean, sample standard deviation (n − 1; 0 for one value) and count of the present values."""
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return None
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return statistics.fmean(present), std, len(present)


def format_mean_std(values: Iterable[float | None], fmt: str, *, std: bool = True) -> str:
    """`84.12 ± 0.31` (`84.12` for a single value or without `std`, `-` for none)."""
    stats = mean_std(values)
    if stats is None:
        return "-"
    text = fmt.format(stats[0])
    return f"{text} ± {fmt.replace('+', '').format(stats[1])}" if std and stats[2] > 1 else text


def _sort_key(row: dict) -> tuple:
    gran = row["granularity"].split()[0]
    return (row["method"], GRANULARITY_ORDER.index(gran) if gran in GRANULARITY_ORDER else 99,
            row["granularity"], -row["density"],
            ALGORITHM_ORDER.index(row["algorithm"]) if row["algorithm"] in ALGORITHM_ORDER else 99,
            sorted(row["_key"].items(), key=str))


def group_rows(rows: list[dict]) -> list[list[dict]]:
    """Runs that differ only in their seed, grouped; groups in table order."""
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=_sort_key):
        groups.setdefault(repr(sorted(row["_key"].items())), []).append(row)
    return list(groups.values())


def extra_columns(rows: list[dict]) -> list[str]:
    """Config keys (beyond the identity columns) that take more than one value between runs of
    the same method (runs whose algorithm ignores the key don't count)."""
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row["_key"])
    keys = sorted({k for row in rows for k in row["_key"]} - IDENTITY_KEYS - {"train.seed"})
    return [k for k in keys if any(len({repr(key[k]) for key in keys_ if k in key}) > 1
                                   for keys_ in by_method.values())]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _best(groups: list[list[dict]]) -> set[int]:
    """Indices of the groups with the best mean linear accuracy among the sparse rows of the
    same method, granularity and density (algorithms, or the settings an ablation sweeps)."""
    blocks: dict[str, list[tuple[float, int]]] = {}
    for i, group in enumerate(groups):
        stats = mean_std(r["linear_top1"] for r in group)
        if stats is not None and group[0]["algorithm"] != "dense":
            head = group[0]
            key = repr([head["method"], head["granularity"], head["density"]])
            blocks.setdefault(key, []).append((stats[0], i))
    return {max(block)[1] for block in blocks.values() if len(block) > 1}


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    """A markdown table: the header line, the `|---|` rule, one line per row of cells."""
    rule = "|" + "|".join("---" for _ in head) + "|"
    return "\n".join(["| " + " | ".join(head) + " |", rule,
                      *("| " + " | ".join(cells) + " |" for cells in body)])


def _identity_cells(group: list[dict], extras: list[str]) -> list[str]:
    """The identity, swept-setting and seed-count cells of a group's table line."""
    first = group[0]
    cells = [first["method"], first["algorithm"], first["granularity"], f"{first['density']:g}"]
    return [*cells, *(_cell(first["_key"].get(k)) for k in extras), str(len(group))]


def results_table(rows: list[dict]) -> str:
    """The paper-style table: one line per configuration, metrics as mean ± std over seeds."""
    groups, extras = group_rows(rows), extra_columns(rows)
    best = _best(groups)
    head = [*IDENTITY, *(TITLES.get(k, k) for k in extras), "n", *(m[1] for m in METRICS)]
    body = []
    for i, group in enumerate(groups):
        cells = _identity_cells(group, extras)
        for field, _, fmt, with_std in METRICS:
            text = format_mean_std((r.get(field) for r in group), fmt, std=with_std)
            cells.append(f"**{text}**" if field == "linear_top1" and i in best else text)
        body.append(cells)
    return markdown_table(head, body)


def raw_pixel_table(rows: list[dict]) -> str:
    """The raw-pixel probes (no training) per dataset, beside which every encoder is judged."""
    by_data: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("raw_linear_top1") is not None or row.get("raw_knn_top1") is not None:
            by_data.setdefault(str(row["_key"].get("data.name", "-")), []).append(row)
    if not by_data:
        return "_No raw-pixel baseline in these runs (eval.raw_baseline = false)._"
    body = []
    for data, group in sorted(by_data.items()):
        knn, linear = ([r[f"raw_{probe}_top1"] for r in group] for probe in ("knn", "linear"))
        knn, linear = (format_mean_std(v, "{:.2f}", std=len(set(v)) > 1) for v in (knn, linear))
        body.append([data, "raw pixels (no training)", knn, linear])
    return markdown_table(["data", "input", "kNN top-1 (%)", "linear top-1 (%)"], body)


def vs_raw_table(rows: list[dict]) -> str:
    """Each configuration against raw pixels, paired by seed (a run's eval.json holds both probes
    of its encoder and of raw pixels, whose linear probe shares the run's seed): mean ± std of
    the differences, and on how many seeds the encoder is above raw pixels on both probes."""
    groups, extras = group_rows(rows), extra_columns(rows)
    head = [*IDENTITY, *(TITLES.get(k, k) for k in extras), "n", "kNN − raw, same seed",
            "linear − raw, same seed", "seeds above raw on both probes"]
    body = []
    for group in groups:
        diffs = [[_minus(r.get(f"{p}_top1"), r.get(f"raw_{p}_top1")) for r in group]
                 for p in ("knn", "linear")]
        paired = [(k, lin) for k, lin in zip(*diffs, strict=True)
                  if k is not None and lin is not None]
        if paired:
            above = sum(k > 0 and lin > 0 for k, lin in paired)
            body.append([*_identity_cells(group, extras),
                         *(format_mean_std(d, "{:+.2f}") for d in diffs),
                         f"{above} of {len(paired)}"])
    return markdown_table(head, body) if body else ""


def setting_lines(rows: list[dict]) -> list[str]:
    """What all runs share, and the training recipe of each method where methods differ."""
    keys = sorted({k for row in rows for k in row["_key"]})
    shared = [k for k in keys if len({repr(r["_key"].get(k)) for r in rows}) == 1]
    wanted = ("data.", "model.", "train.epochs", "train.batch_size", "sparsity.allocation",
              "sparsity.update_every", "sparsity.start_epoch", "sparsity.end_epoch",
              "sparsity.ramp_start", "sparsity.ramp_end")
    lines = ["Shared by all runs: " + ", ".join(
        f"`{k}={_cell(rows[0]['_key'][k])}`" for k in shared
        if k.startswith(wanted) and rows[0]["_key"].get(k) is not None) + "."]
    methods = sorted({r["method"] for r in rows})
    recipe = [k for k in keys if k.startswith("train.") and k not in shared and k != "train.seed"]
    for method in methods if len(methods) > 1 and recipe else ():
        own = [r["_key"] for r in rows if r["method"] == method]
        values = {k: sorted({_cell(key.get(k)) for key in own}) for k in recipe}  # several: swept
        lines.append(f"- {method}: "
                     + ", ".join(f"`{k}={' / '.join(v)}`" for k, v in values.items()))
    return lines


def ramp_window(config: dict) -> tuple[float, float]:
    """(start, end) epoch of the density ramp (`synccp.sparsity.schedule.ramp_epochs`, which the
    trainer uses); a config.json written before the fractional keys had end_epoch = -1 for 75%."""
    from synccp.sparsity.schedule import ramp_epochs

    s, epochs = config["sparsity"], float(config["train"]["epochs"])
    end = s.get("end_epoch")
    return ramp_epochs(start_epoch=s.get("start_epoch"),
                       end_epoch=None if end is None or end < 0 else end,
                       ramp_start=s.get("ramp_start"), ramp_end=s.get("ramp_end"), epochs=epochs)
