"""The run directory (DESIGN.md §3): the one owner of its format.

`config.json` (resolved config), `metrics.jsonl`, `summary.json`, `checkpoints/last.pt`,
`model.safetensors`, `masks.safetensors`, `eval.json`, `cost.json`, and the writer's lock. Names
and states in `layout`, atomic writes in `atomic`, validated reads in `files`, the one-writer lock
in `lock`, the stored config (read as a `synccp.specs.RunSpec`) in `stored`, resumable state in
`checkpoint`, the exported model and masks in `artifacts`. Training, evaluation, the cost model,
the reports and the sweep all read and write run directories through this package.
"""

from synccp.rundir.atomic import atomic_write, fsync_directory, stray_temporaries, write_json
from synccp.rundir.files import RunDirError, read_json, read_metrics, read_summary
from synccp.rundir.layout import (
    CHECKPOINTS,
    CONFIG,
    COST,
    EVAL,
    HARMLESS_KEYS,
    LATER_KEYS,
    MASKS,
    METRICS,
    MODEL,
    SUMMARY,
    MetricsLog,
    finished_summary,
    foreign_entries,
    has_checkpoint,
    is_finished,
    run_identity,
)
from synccp.rundir.stored import (
    check_run_dir,
    config_differences,
    default_record,
    prepare_run_dir,
    read_config,
    read_record,
    read_spec,
    resume_config,
    spec_of,
)

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "COST",
    "EVAL",
    "HARMLESS_KEYS",
    "LATER_KEYS",
    "MASKS",
    "METRICS",
    "MODEL",
    "SUMMARY",
    "MetricsLog",
    "RunDirError",
    "atomic_write",
    "check_run_dir",
    "config_differences",
    "default_record",
    "finished_summary",
    "foreign_entries",
    "fsync_directory",
    "has_checkpoint",
    "is_finished",
    "prepare_run_dir",
    "read_config",
    "read_json",
    "read_metrics",
    "read_record",
    "read_spec",
    "read_summary",
    "resume_config",
    "run_identity",
    "spec_of",
    "stray_temporaries",
    "write_json",
]
