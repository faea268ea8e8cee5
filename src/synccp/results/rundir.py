"""The run directory (DESIGN.md §3): atomic file writes and the metrics log.

Every file is written to a temporary sibling and renamed over the target (`os.replace` is atomic
on POSIX), so a crash or a kill leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.safetensors"
MASKS = "masks.safetensors"
EVAL = "eval.json"
COST = "cost.json"
CHECKPOINTS = "checkpoints"


class RunDirError(ValueError):
    """The run directory cannot be used as asked (holds another run, is missing files, ...)."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file next to `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | Path, payload: Any) -> None:
    """Atomically write `payload` as indented JSON."""
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON: {err}") from err


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """All records of `metrics.jsonl` (optionally of one `kind`); a torn last line is ignored."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records


class MetricsLog:
    """Appends one JSON object per line to `metrics.jsonl`; `truncate_after(step)` on resume."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS

    def truncate_after(self, step: int) -> None:
        """Drop records newer than `step` (written after the checkpoint we resume from)."""
        kept = [r for r in read_metrics(self.path.parent) if r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def sync(self) -> None:
        if self.path.exists():
            with open(self.path, "a") as handle:
                handle.flush()
                os.fsync(handle.fileno())


def prepare_run_dir(run_dir: Path, config: dict, *, resume: bool) -> None:
    """Create `run_dir` for a new run, or check it holds this same run when resuming.

    Refuses (without touching anything) a directory that holds a different run, or a finished
    run when not resuming.
    """
    existing = run_dir / CONFIG
    if not existing.exists():
        if resume:
            raise RunDirError(f"--resume: {run_dir} holds no run ({CONFIG} is missing)")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunDirError(f"{run_dir} is not empty and holds no synccp run; choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(existing, config)
        return
    previous = read_json(existing)
    if previous != config:
        changed = sorted(f"{s}.{k}" for s in config for k in config[s]
                         if previous.get(s, {}).get(k) != config[s][k])
        raise RunDirError(f"{run_dir} already holds a different run (differs in: "
                          f"{', '.join(changed) or 'sections'}); choose another --out")
    if not resume:
        state = "finished" if (run_dir / SUMMARY).exists() else "interrupted"
        raise RunDirError(f"{run_dir} already holds this run ({state}); pass --resume to "
                          f"continue it or choose another --out")
