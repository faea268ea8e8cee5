"""`synccp report DIR... --out R`: tables and plots from finished run directories.

Reads only files (config.json, summary.json, eval.json, cost.json, metrics.jsonl), never logs.
Writes `results.csv` (one row per run), `results.md` (mean ± std over seeds, the raw-pixel
baseline, the plots) and the PNG plots into R; for a single run also `metrics.csv` (every record
of its metrics.jsonl) and `training_curves.png` (results/run_report.py).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synccp import rundir
from synccp.results.claims import claims_lines
from synccp.results.plots import make_plots
from synccp.results.run_report import run_report
from synccp.results.tables import (
    ramp_window,
    raw_pixel_table,
    results_table,
    setting_lines,
    vs_raw_table,
    with_dense_differences,
    write_csv,
)
from synccp.sparsity.registry import POLICIES, policy_for
from synccp.study import recorded_machine

LOG = logging.getLogger(__name__)
# not train.compile: a compiled run's accuracy may differ from eager's, so the report keeps them
# apart (a "compiled" column when both are present)
IGNORED = {"train.seed", "train.progress", "train.log_every", "train.device", "data.root"}


class ReportError(ValueError):
    """No usable run under the given paths; the message names them."""


@dataclass(frozen=True)
class Run:
    """The files of one finished run directory."""

    path: Path
    config: dict
    summary: dict
    eval: dict | None
    cost: dict | None
    updates: list[dict]  # the mask_update records of metrics.jsonl, in step order
    machine: str | None = None  # from a sweep's sweep.json (`synccp.study.recorded_machine`)


def get(tree: Any, *keys: str) -> Any:
    """`tree[k1][k2]...`, or None where a level is missing (files from older versions)."""
    for key in keys:
        if not isinstance(tree, dict) or tree.get(key) is None:
            return None
        tree = tree[key]
    return tree


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories (holding config.json) given directly or found below each path."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ReportError(f"{path} does not exist")
        if (path / rundir.CONFIG).is_file():
            found.append(path)
            continue
        found += sorted(p.parent for p in path.rglob(rundir.CONFIG)
                        if rundir.CHECKPOINTS not in p.parts)
    return list(dict.fromkeys(found))


def load_run(path: Path) -> Run | None:
    """The run in `path`, or None (logged) when it has not finished (no summary.json)."""
    if not rundir.is_finished(path):
        LOG.warning("skipping %s: not finished (no %s)", path, rundir.SUMMARY)
        return None
    optional = {name: rundir.read_json(path / name) if (path / name).is_file() else None
                for name in (rundir.EVAL, rundir.COST)}
    updates = _with_revival_rates(sorted(rundir.read_metrics(path, "mask_update"),
                                         key=lambda r: r.get("step", 0)))
    config = rundir.read_record(path)  # older runs: today's keys
    return Run(path=path, config=config,
               summary=rundir.read_summary(path / rundir.SUMMARY), eval=optional[rundir.EVAL],
               cost=optional[rundir.COST], updates=updates, machine=recorded_machine(path))


def study_key(config: dict) -> dict[str, Any]:
    """The flattened config without seed and bookkeeping; keys the algorithm ignores dropped."""
    flat = {f"{s}.{k}": v for s, section in config.items() for k, v in section.items()}
    flat = {k: v for k, v in flat.items() if k not in IGNORED}
    algorithm, granularity = flat.get("sparsity.algorithm"), flat.get("sparsity.granularity")
    if algorithm == "dense":
        return {k: v for k, v in flat.items()
                if not k.startswith("sparsity.") or k == "sparsity.algorithm"}
    policy = policy_for(algorithm)
    unused = {"sparsity.n": granularity != "nm", "sparsity.m": granularity != "nm",
              "sparsity.block_out": granularity != "block",
              "sparsity.block_in": granularity != "block",
              "sparsity.density_gap": not policy.uses_gap,
              "sparsity.sparse_branch": not policy.uses_sparse_branch,
              "sparsity.drop_fraction": policy.regrow is None,
              "sparsity.regrow_end": policy.regrow is None}
    for key in ("sparsity.ramp_start", "sparsity.ramp_end", "sparsity.start_epoch",
                "sparsity.end_epoch"):
        unused[key] = not policy.has_ramp
    return {k: v for k, v in flat.items() if not unused.get(k, False)}


def granularity_label(sparsity: dict) -> str:
    """`unstructured`, `nm 2:4`, `block 4x4`, `channel`; `dense` for the dense algorithm."""
    if sparsity["algorithm"] == "dense":
        return "dense"
    if sparsity["granularity"] == "nm":
        return f"nm {sparsity['n']}:{sparsity['m']}"
    if sparsity["granularity"] == "block":
        return f"block {sparsity['block_out']}x{sparsity['block_in']}"
    return sparsity["granularity"]


def target_density(sparsity: dict) -> float:
    """The final density the run aims at: 1 for dense, N/M for N:M, else `sparsity.density`."""
    if sparsity["algorithm"] == "dense":
        return 1.0
    if sparsity["granularity"] == "nm":
        return sparsity["n"] / sparsity["m"]
    return float(sparsity["density"])


def pruned_branch(config: dict) -> str:
    """The branch an algorithm prunes to its target density: SDCLR's `sparse_branch` (the other
    one stays dense), the online one for every other algorithm."""
    sparsity = config["sparsity"]
    policy = POLICIES.get(sparsity["algorithm"])
    return sparsity["sparse_branch"] if policy and policy.uses_sparse_branch else "online"


def ramp_mean(run: Run, branch: str, metric: str = "flip_rate") -> float | None:
    """Mean total `metric` of `branch` over the mask updates inside the ramp (step 0 excluded);
    over all of them for an algorithm without a density ramp (SDCLR, RigL)."""
    policy = POLICIES.get(run.config["sparsity"]["algorithm"])
    start, end = (ramp_window(run.config) if policy is None or policy.has_ramp
                  else (0.0, float(run.config["train"]["epochs"])))
    values = [_metric(u, previous, branch, metric)
              for previous, u in zip(run.updates, run.updates[1:], strict=False)
              if u.get("step", 0) > 0 and start < u.get("epoch", -1) <= end + 1e-9]
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else None


def _metric(update: dict, previous: dict, branch: str, metric: str) -> float | None:
    """A logged total metric; the revival rate |B \\ A|/|B| is derived from the flip rate and the
    two densities for runs logged before it was recorded: |A∩B| = (|A| + |B| − flip·|A|) / 2."""
    value = get(update, "oscillation", branch, "total", metric)
    if value is not None or metric != "revival_rate":
        return value
    flip = get(update, "oscillation", branch, "total", "flip_rate")
    before, after = (get(u, "density", branch, "total") for u in (previous, update))
    if None in (flip, before, after) or not after:
        return None
    return max(0.0, 1.0 - (before + after - flip * before) / (2 * after))


def _with_revival_rates(updates: list[dict]) -> list[dict]:
    """`updates` with the revival rate of each branch filled in (derived, see `_metric`) where a
    run logged before it was recorded lacks it, so curves over training can show it too."""
    for previous, update in zip(updates, updates[1:], strict=False):
        for branch in ("online", "second"):
            total = get(update, "oscillation", branch, "total")
            if isinstance(total, dict) and "revival_rate" not in total:
                derived = _metric(update, previous, branch, "revival_rate")
                if derived is not None:
                    total["revival_rate"] = derived
    return updates


def _final(run: Run, *keys: str) -> float | None:
    values = [get(u, *keys) for u in run.updates]
    values = [v for v in values if v is not None]
    return values[-1] if values else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _cost_fields(cost: dict | None) -> dict[str, float | None]:
    """Training-MAC ratio (sparse / dense, whole run) and modeled speedup (dense / sparse
    accelerator cycles) from cost.json: `totals.{sparse,dense}.macs` and `speedup.cycles`, or
    the flat `totals.{sparse_macs,dense_macs,speedup}`; None where absent."""
    sparse = (_number(get(cost, "totals", "sparse", "macs"))
              or _number(get(cost, "totals", "sparse_macs")))
    dense = (_number(get(cost, "totals", "dense", "macs"))
             or _number(get(cost, "totals", "dense_macs")))
    speedup = _number(get(cost, "speedup", "cycles")) or _number(get(cost, "totals", "speedup"))
    ratio = sparse / dense if sparse is not None and dense else None
    return {"train_flops_ratio": ratio, "modeled_speedup": speedup}


def run_row(run: Run) -> dict[str, Any]:
    """The results.csv row of a run, plus `_key` (its study key) and `_run` (the Run)."""
    cfg, sparsity = run.config, run.config["sparsity"]
    algorithm = sparsity["algorithm"]
    policy, pruned = POLICIES.get(algorithm), pruned_branch(cfg)
    return {
        "run": os.path.relpath(run.path) if not run.path.is_absolute() else str(run.path),
        "method": cfg["method"]["name"], "algorithm": algorithm,
        "granularity": granularity_label(sparsity), "density": target_density(sparsity),
        "density_gap": sparsity["density_gap"] if policy and policy.uses_gap else None,
        "score_ema": sparsity["score_ema"] if policy and policy.uses_scores else None,
        "seed": cfg["train"]["seed"], "epochs": cfg["train"]["epochs"],
        "width": cfg["model"]["width"], "subset": cfg["data"]["subset"],
        "knn_top1": get(run.eval, "encoder", "knn_top1"),
        "linear_top1": get(run.eval, "encoder", "linear_top1"),
        "raw_knn_top1": get(run.eval, "raw_pixels", "knn_top1"),
        "raw_linear_top1": get(run.eval, "raw_pixels", "linear_top1"),
        "final_online_density": get(run.summary, "sparsity", "online", "total"),
        "final_second_density": get(run.summary, "sparsity", "second", "total"),
        "ramp_flip_rate": ramp_mean(run, pruned),
        "ramp_flip_rate_second": ramp_mean(run, "second"),
        "ramp_revival_rate": ramp_mean(run, pruned, "revival_rate"),
        "final_online_second_iou": _final(run, "oscillation", "online_vs_second_iou", "total"),
        **_cost_fields(run.cost),
        "wall_s": run.summary.get("wall_s_last_process"),
        "machine": run.machine,
        "_key": study_key(cfg), "_run": run,
    }


def _markdown(rows: list[dict], figures: dict[str, Path | str], inputs: list[Path],
              unfinished: list[Path]) -> str:
    devices = sorted({f"{r['_run'].summary.get('device', '?')} "
                      f"(torch {r['_run'].summary.get('torch', '?')})"
                      for r in rows})
    lines = ["# synccp results", "",
             f"{len(rows)} finished runs under {', '.join(f'`{p}`' for p in inputs)}; "
             f"ran on {', '.join(devices)}.",
             "Accuracies are top-1 (%) on the test split of frozen online-encoder features, "
             "mean ± sample std over seeds (n = number of seeds). `− dense, same seed`: the "
             "run's accuracy minus that of the dense run with the same seed and settings, then "
             "mean ± std over seeds (runs of one seed share their start, so this paired "
             "difference is far less noisy than comparing two means). Flip rate: share of the "
             "active weights of the pruned branch (SDCLR's `sparse_branch`, the online one for "
             "every other algorithm) that changed at a mask update, averaged over the density "
             "ramp (over the whole run for SDCLR and RigL, which have none). Train FLOPs "
             "and modeled speedup come from the cost model (cost.json); `-` where it is absent.",
             "",
             *_machine_lines(rows), *setting_lines(rows), "", "## Results", "",
             results_table(rows), "",
             "**Bold**: best linear accuracy among the sparse rows of the same method, granularity "
             "and density. Online / second density: final fraction of prunable weights kept in "
             "each branch.", "", "## Baseline", "", raw_pixel_table(rows), "",
             *_vs_raw_lines(rows), *claims_lines(rows), "## Plots", ""]
    for title, figure in figures.items():
        if not isinstance(figure, Path):
            link = f"_Not drawn: {figure}._"
        elif figure.suffix == ".csv":
            link = f"[{figure.name}]({figure.name})"
        else:
            link = f"![{title}]({figure.name})"
        lines += [f"### {title}", "", link, ""]
    if unfinished:
        lines += ["## Unfinished runs (not in the tables)",
                  ""] + [f"- `{p}`" for p in unfinished] + [""]
    lines += ["Regenerate: `synccp report " + " ".join(str(p) for p in inputs) + " --out <dir>`",
              ""]
    return "\n".join(lines)


def _machine_lines(rows: list[dict]) -> list[str]:
    """Which machines made the runs (sweep.json), when more than one did: a run is exact per CPU
    and SIMD level, so a difference paired by seed across two machines also holds the machines'."""
    counts: dict[str, int] = {}
    for row in rows:
        name = row.get("machine") or "no sweep record"
        counts[name] = counts.get(name, 0) + 1
    if len(counts) < 2:
        return []
    return ["Machines (the sweep's `sweep.json`, the `machine` column of results.csv): "
            + "; ".join(f"{name}: {n} run{'s' * (n != 1)}" for name, n in sorted(counts.items()))
            + ". Runs of one seed on different machines part from the first optimizer step.", ""]


def _vs_raw_lines(rows: list[dict]) -> list[str]:
    table = vs_raw_table(rows)
    return ["Every configuration against raw pixels, paired by seed (a run's eval.json holds both; "
            "the raw linear probe shares the run's seed):", "", table, ""] if table else []


def build_report(run_dirs: list[Path], out: Path) -> Path:
    """Write results.csv, results.md and the plots for every finished run found under
    `run_dirs` (run directories or folders holding them) into `out`; return results.md's path."""
    inputs = [Path(p) for p in run_dirs]
    paths = find_run_dirs(inputs)
    loaded = {path: load_run(path) for path in paths}
    runs = [run for run in loaded.values() if run is not None]
    if not runs:
        raise ReportError(f"no finished run (config.json + summary.json) under "
                          f"{', '.join(str(p) for p in inputs)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = with_dense_differences([run_row(run) for run in runs])
    runs_by_path = {run.path: run for run in runs}
    write_csv(rows, out / "results.csv")
    figures = make_plots(rows, out)
    if len(runs) == 1:  # one run: its metrics as a CSV and its training curves too
        figures.update(run_report(runs[0].path, out))
    text = _markdown(rows, figures, inputs, [p for p, run in loaded.items() if run is None])
    quick = [run.path for run in runs if (run.eval or {}).get("protocol", "full") != "full"]
    if quick:  # eval.subset: development numbers, never results
        text += "\n".join(["", "## Quick-protocol evaluations (eval.subset: not results)", "",
                           *(f"- `{p}`: {get(runs_by_path[p].eval, 'protocol')}" for p in quick),
                           ""])
    (out / "results.md").write_text(text)
    LOG.info("report of %d runs written to %s", len(rows), out)
    return out / "results.md"
