"""`synccp inspect DIR`: per-layer shapes and densities of both branches, and pattern validity."""

from __future__ import annotations

from pathlib import Path

from synccp import rundir
from synccp.rundir.artifacts import load_masks
from synccp.sparsity.pattern_report import pattern_report, pattern_summary


def inspect_rows(run_dir: Path) -> tuple[list[dict], str]:
    """One row per prunable layer (name, shape, params, online/second density, pattern check),
    and the one-line pattern summary (e.g. "2:4 valid in 19/19 layers")."""
    s = rundir.read_spec(run_dir).sparsity
    masks = load_masks(run_dir)
    granularity = "unstructured" if s.algorithm == "dense" else s.granularity
    rows, reports = [], []
    for key, online in masks.items():
        if not key.startswith("online/"):
            continue
        name = key[len("online/"):]
        second = masks[f"second/{name}"]
        report = pattern_report(
            name, online, granularity, n=s.n, m=s.m, block=(s.block_out, s.block_in)
        )
        reports.append(report)
        rows.append(
            {
                "name": name,
                "shape": tuple(online.shape),
                "params": online.numel(),
                "online": online.float().mean().item(),
                "second": second.float().mean().item(),
                "pattern": "ok"
                if report["valid"]
                else ("left dense" if not report["fits"] else f"{report['violations']} violations"),
                "second_pattern": _second_pattern(name, second, granularity, s),
            }
        )
    return rows, pattern_summary(reports)


def _second_pattern(name: str, second, granularity: str, s) -> str:
    """N:M: the second branch's actual layout, e.g. "80% 2:4 + 20% dense groups" (SyncCP's gap
    adds Δ to the density, so the second branch keeps (1 − d − Δ)/(1 − N/M) of its groups N:M)."""
    if granularity != "nm":
        return ""
    report = pattern_report(name, second, "nm", n=s.n, m=s.m)
    if not report["fits"]:
        return "left dense"
    share = report.get("nm_group_share", 0.0)
    return f"{share:.0%} {s.n}:{s.m} + {1 - share:.0%} dense groups"


def format_inspect(run_dir: Path) -> str:
    rows, summary = inspect_rows(run_dir)
    width = max(len(r["name"]) for r in rows)
    nm = any(r["second_pattern"] for r in rows)
    lines = [
        f"{'layer':{width}s}  {'shape':>18s} {'params':>9s} {'online':>7s} {'second':>7s}  pattern"
        + ("   second branch" if nm else "")
    ]
    total = sum(r["params"] for r in rows)
    for r in rows:
        shape = "×".join(map(str, r["shape"]))
        lines.append(
            f"{r['name']:{width}s}  {shape:>18s} {r['params']:>9d} {r['online']:>7.3f} "
            f"{r['second']:>7.3f}  {r['pattern']}" + (f"   {r['second_pattern']}" if nm else "")
        )
    online = sum(r["online"] * r["params"] for r in rows) / total
    second = sum(r["second"] * r["params"] for r in rows) / total
    lines.append(f"{'total':{width}s}  {'':>18s} {total:>9d} {online:>7.3f} {second:>7.3f}")
    lines.append(summary)
    return "\n".join(lines)
