"""Training cost: per-layer GEMMs, FLOPs, a sparse training accelerator model, SCALE-Sim bridge.

Public entry points: `cost_report(path)` (run directory or config TOML), `format_cost(report)`,
`write_cost_json(report, path)`; see docs/cost.md.
"""

from synccp.cost.accelerator import DEFAULT_ACCELERATOR, Accelerator
from synccp.cost.report import format_cost, write_cost_json
from synccp.cost.run import config_report, cost_report, run_report

__all__ = ["DEFAULT_ACCELERATOR", "Accelerator", "config_report", "cost_report", "format_cost",
           "run_report", "write_cost_json"]
