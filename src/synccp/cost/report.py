"""cost.json layout, whole-run totals, the readable table, and the atomic writer."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from synccp.cost.accelerator import Accelerator, PhaseCost
from synccp.cost.gemms import PHASES, phase_gemm

GIGA = 1e9


def _final(cost: PhaseCost) -> dict:
    return {"sparse_macs": cost.macs, "slots": cost.slots, "cycles": cost.cycles,
            "compute_cycles": cost.compute_cycles, "memory_cycles": cost.memory_cycles,
            "bound": cost.bound, "dram_bytes": cost.dram_bytes, "energy_pj": cost.energy_pj,
            "imbalance": cost.imbalance, "rule": cost.rule}


def layer_entries(workload, final_step: dict, run: dict, dense_step: dict, evaluator,
                  last_interval) -> dict:
    """Per layer → phase → "branch/view": GEMM, dense per step, final per step, whole run."""
    by_layer: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    for (name, phase, key), cost in final_step.items():
        by_layer[name][phase][key] = {"final": _final(cost), "run": run[(name, phase, key)],
                                      "dense_macs": dense_step[(name, phase, key)].macs,
                                      "dense_cycles": dense_step[(name, phase, key)].cycles}
    entries = {}
    for layer in workload.layers:
        phases = {}
        for phase in PHASES:
            if phase in by_layer[layer.name]:
                gemm = phase_gemm(layer, phase, workload.batch)
                phases[phase] = {key: {"gemm": [gemm.m, gemm.n, gemm.k], **value}
                                 for key, value in by_layer[layer.name][phase].items()}
        entries[layer.name] = {"part": layer.part, "weight_shape": list(layer.weight_shape),
                               "phases": phases}
        if layer.name in workload.prunable:
            entries[layer.name].update(_mask_facts(layer, evaluator, last_interval))
    return entries


def _mask_facts(layer, evaluator, last_interval) -> dict:
    """Final density per branch; N:M transposability of the final masks (run directories)."""
    facts = {"density": {b: d.get(layer.name, 1.0) for b, d in last_interval.densities.items()}}
    if evaluator.spec.sparsity.granularity == "nm" and evaluator.masks:
        facts["transposable"] = {
            branch: evaluator.state_of_mask(
                layer, branch, evaluator.masks[f"{branch}/{layer.name}"]
            ).transposable
            for branch in ("online", "second")
            if f"{branch}/{layer.name}" in evaluator.masks
        }
    return facts


def _sum(costs, key: str, times: float = 1.0) -> float:
    return sum(getattr(c, key) if isinstance(c, PhaseCost) else c[key] for c in costs) * times


def totals(
    run: dict, work: dict, dense_step: dict, dense_work: dict, total_steps: int, accel: Accelerator
) -> dict:
    """Whole-run totals of the sparse run and of the dense baseline, and the speedups."""
    sides = {}
    for side, gemm, elem, times in (
        ("sparse", run.values(), work.values(), 1),
        ("dense", dense_step.values(), dense_work.values(), total_steps),
    ):
        gemm_cycles = _sum(gemm, "cycles", times)
        elem_cycles = _sum(elem, "cycles")
        cycles = gemm_cycles + elem_cycles
        sides[side] = {
            "macs": _sum(gemm, "macs", times),
            "gemm_cycles": gemm_cycles,
            "elementwise_cycles": elem_cycles,
            "cycles": cycles,
            "seconds": cycles / accel.clock_hz,
            "energy_pj": _sum(gemm, "energy_pj", times) + _sum(elem, "energy_pj"),
        }
    sparse, dense = sides["sparse"], sides["dense"]
    speedup = {
        key: dense[key] / sparse[key] if sparse[key] else float("inf")
        for key in ("cycles", "energy_pj", "macs")
    }
    return {
        "totals": sides,
        "speedup": {
            "cycles": speedup["cycles"],
            "energy": speedup["energy_pj"],
            "macs": speedup["macs"],
        },
    }


def format_cost(report: dict) -> str:
    """A readable table: per layer and phase (summed over branches and views) at the final
    densities, then the whole-run totals and the speedup over the dense run."""
    run, acc = report["run"], report["accelerator"]
    lines = [
        f"{run['method']} + {run['algorithm']} ({run['granularity']}), {run['backbone']} "
        f"width {run['width']}, batch {run['batch_size']}, {run['total_steps']} steps, "
        f"{run['mask_updates']} mask updates",
        f"accelerator: {acc['rows']}x{acc['cols']} {acc['dataflow']} @ {acc['clock_hz'] / GIGA:g} "
        f"GHz, "
        f"{acc['buffer_bytes'] / 2**20:g} MiB buffer, {acc['dram_bytes_per_s'] / GIGA:g} GB/s DRAM",
        f"densities: {report['density_source']}",
        "",
        f"{'layer':<34}{'phase':<8}{'dense GMAC':>11}{'GMAC':>9}{'Mcycles':>10}{'imbal':>7}  rule",
        "(per step, final densities, summed over branches and views)",
    ]
    for name, entry in report["layers"].items():
        for phase, views in entry["phases"].items():
            finals = [v["final"] for v in views.values()]
            dense = sum(v["dense_macs"] for v in views.values()) / GIGA
            imbalance = max(f["imbalance"] for f in finals)
            lines.append(
                f"{name[:33]:<34}{phase:<8}{dense:>11.3f}{_sum(finals, 'sparse_macs') / GIGA:>9.3f}"
                f"{_sum(finals, 'cycles') / 1e6:>10.3f}{imbalance:>7.2f}  {finals[0]['rule']}"
            )
    return "\n".join(lines + [""] + _totals_lines(report))


def _totals_lines(report: dict) -> list[str]:
    sparse, dense = report["totals"]["sparse"], report["totals"]["dense"]
    rows = [
        ("MACs (G)", "macs", GIGA),
        ("cycles (G)", "cycles", GIGA),
        ("  GEMM", "gemm_cycles", GIGA),
        ("  element-wise", "elementwise_cycles", GIGA),
        ("time (s)", "seconds", 1.0),
        ("energy (J)", "energy_pj", 1e12),
    ]
    lines = [f"{'whole run':<22}{'dense':>14}{'this run':>14}{'dense/this':>12}"]
    for label, key, unit in rows:
        ratio = dense[key] / sparse[key] if sparse[key] else float("inf")
        lines.append(
            f"{label:<22}{dense[key] / unit:>14.4g}{sparse[key] / unit:>14.4g}{ratio:>12.3f}"
        )
    speed = report["speedup"]
    lines.append(
        f"speedup over dense {report['run']['method']}: {speed['cycles']:.3f}x cycles, "
        f"{speed['energy']:.3f}x energy, {speed['macs']:.3f}x MACs"
    )
    return lines


def write_cost_json(report: dict, path: str | Path) -> None:
    """Write `report` as indented JSON atomically (temporary sibling file + os.replace)."""
    from synccp.rundir.atomic import write_json

    write_json(path, report)
