"""`synccp inspect DIR`: per-layer shapes and densities of both branches, and pattern validity."""

from __future__ import annotations

from pathlib import Path

from synccp.config import load_resolved
from synccp.results.rundir import CONFIG
from synccp.sparsity.granularity import pattern_report, pattern_summary
from synccp.train.export import load_masks


def inspect_rows(run_dir: Path) -> tuple[list[dict], str]:
    """One row per prunable layer (name, shape, params, online/second density, pattern check),
    and the one-line pattern summary (e.g. "2:4 valid in 19/19 layers")."""
    cfg = load_resolved(Path(run_dir) / CONFIG)
    s = cfg.sparsity
    masks = load_masks(run_dir)
    granularity = "unstructured" if s.algorithm == "dense" else s.granularity
    rows, reports = [], []
    for key, online in masks.items():
        if not key.startswith("online/"):
            continue
        name = key[len("online/"):]
        second = masks[f"second/{name}"]
        report = pattern_report(name, online, granularity, n=s.n, m=s.m, block=(s.block_out, s.block_in))
        reports.append(report)
        rows.append({"name": name, "shape": tuple(online.shape), "params": online.numel(),
                     "online": online.float().mean().item(), "second": second.float().mean().item(),
                     "pattern": "ok" if report["valid"] else ("left dense" if not report["fits"] else
                                                              f"{report['violations']} violations")})
    return rows, pattern_summary(reports)


def format_inspect(run_dir: Path) -> str:
    rows, summary = inspect_rows(run_dir)
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'layer':{width}s}  {'shape':>18s} {'params':>9s} {'online':>7s} {'second':>7s}  pattern"]
    total = sum(r["params"] for r in rows)
    for r in rows:
        shape = "×".join(map(str, r["shape"]))
        lines.append(f"{r['name']:{width}s}  {shape:>18s} {r['params']:>9d} {r['online']:>7.3f} "
                     f"{r['second']:>7.3f}  {r['pattern']}")
    online = sum(r["online"] * r["params"] for r in rows) / total
    second = sum(r["second"] * r["params"] for r in rows) / total
    lines.append(f"{'total':{width}s}  {'':>18s} {total:>9d} {online:>7.3f} {second:>7.3f}")
    lines.append(summary)
    return "\n".join(lines)
