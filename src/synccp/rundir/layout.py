"""The run directory's layout (DESIGN.md §3): its file names, the metrics log, its identity,
whether it has finished, and what may be written into it.

The one owner of the format is the `synccp.rundir` package: this module (names, states), `atomic`
(writes), `files` (validated reads), `lock` (one writer), `stored` (the stored config.json),
`checkpoint` (resumable state) and `artifacts` (model and masks).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from synccp.rundir.atomic import atomic_write, stray_temporaries
from synccp.rundir.files import read_json, read_metrics, read_summary
from synccp.rundir.lock import LOCK

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.safetensors"
MASKS = "masks.safetensors"
EVAL = "eval.json"
COST = "cost.json"
CHECKPOINTS = "checkpoints"
# Keys a resumed run may change: they decide what is shown and how often it is logged, never the
# result (the optimizer steps, masks and exported model are the same).
HARMLESS_KEYS = ("train.progress", "train.log_every")
# Keys added after runs were committed under study folders, with the value that reproduces those
# older runs: a sweep cell's identity leaves such a key out while it holds that value, so the runs
# committed before the key existed keep their names (synccp.cells.cell_identity).
LATER_KEYS = {"train.compile": False}


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl`; `truncate_after(step)` on resume."""

    def __init__(self, run_dir: str | Path, *, enabled: bool = True):
        self.path = Path(run_dir) / METRICS
        self.enabled = enabled  # False on torchrun ranks other than 0: every call is a no-op

    def truncate_after(self, step: int) -> None:
        """Drop records newer than `step` (written after the checkpoint we resume from); a torn
        last line (a kill mid-append) goes too."""
        if not self.enabled:
            return
        kept = [r for r in read_metrics(self.path.parent) if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def sync(self) -> None:
        if self.enabled and self.path.exists():
            with open(self.path, "a") as handle:
                handle.flush()
                os.fsync(handle.fileno())


def run_identity(run_dir: str | Path) -> str:
    """The identity of the run in `run_dir`: SHA-256 of its stored `config.json` (canonical JSON).
    config.json is written once, when the run starts, so the identity never changes."""
    stored = read_json(Path(run_dir) / CONFIG)
    return hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()


def finished_summary(run_dir: str | Path) -> dict | None:
    """The validated `summary.json` of a finished run, None when the run has not finished."""
    path = Path(run_dir) / SUMMARY
    return read_summary(path) if path.exists() else None


def foreign_entries(run_dir: Path) -> list[Path]:
    """Entries of `run_dir` that are not synccp's lock or a killed write's temporary."""
    strays = stray_temporaries(run_dir)
    return [p for p in run_dir.iterdir() if p.name != LOCK and p not in strays]


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run in `run_dir` has finished training (its summary.json exists)."""
    return (Path(run_dir) / SUMMARY).is_file()


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a checkpoint file a resume can try (valid or not)."""
    folder = Path(run_dir) / CHECKPOINTS
    return folder.is_dir() and any(folder.glob("*.pt*"))
