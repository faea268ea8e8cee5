"""The run directory (DESIGN.md §3): atomic file writes and the metrics log.

Every file is written to a temporary sibling and renamed over the target (`os.replace` is atomic
on POSIX), so a crash or a kill leaves either the old or the new file, never a torn one — plus,
at worst, a stray temporary `.<name>.<random>.tmp`, which the next run of the directory removes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synccp.config import normalized_config_dict

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.safetensors"
MASKS = "masks.safetensors"
EVAL = "eval.json"
COST = "cost.json"
CHECKPOINTS = "checkpoints"
_TEMPORARY = re.compile(r"^\..+\.[^.]+\.tmp$")  # atomic_write's mkstemp names: .<name>.<random>.tmp


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
        fsync_directory(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_directory(path: str | Path) -> None:
    """Make renames inside `path` durable (power loss); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def stray_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files `atomic_write` left in `folder` when its process was killed mid-write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _TEMPORARY.match(p.name))


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


def check_run_dir(run_dir: Path, config: dict, *, resume: bool) -> None:
    """Raise `RunDirError` (touching nothing) unless `run_dir` can take this run: a new run needs
    a missing or empty directory (a stray temporary of a killed write counts as empty), a resumed
    one the same run's `config.json`. A different run is refused, and so is this run again
    without `resume`."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a directory; choose another --out")
    existing = run_dir / CONFIG
    if not existing.exists():
        if resume:
            raise RunDirError(f"--resume: {run_dir} holds no run ({CONFIG} is missing)")
        others = [p for p in run_dir.iterdir() if p not in stray_temporaries(run_dir)] if run_dir.exists() else []
        if others:
            raise RunDirError(f"{run_dir} is not empty and holds no synccp run (it holds "
                              f"{', '.join(sorted(p.name for p in others)[:5])}); choose another --out")
        return
    previous, config = normalized_config_dict(read_json(existing)), normalized_config_dict(config)
    if previous != config:
        changed = sorted(f"{s}.{k}" for s in config for k in config[s]
                         if previous.get(s, {}).get(k) != config[s][k])
        raise RunDirError(f"{run_dir} already holds a different run (differs in: "
                          f"{', '.join(changed) or 'sections'}); choose another --out")
    if not resume:
        state = "finished" if (run_dir / SUMMARY).exists() else "interrupted"
        raise RunDirError(f"{run_dir} already holds this run ({state}); pass --resume to "
                          f"continue it or choose another --out")


def prepare_run_dir(run_dir: Path, config: dict, *, resume: bool) -> None:
    """Create `run_dir` for a new run, or check it holds this same run when resuming.

    Refuses (without touching anything) a directory that holds a different run, or a finished
    run when not resuming (`check_run_dir`). Removes temporaries of writes a kill interrupted.
    """
    check_run_dir(run_dir, config, resume=resume)
    for stray in stray_temporaries(run_dir) + stray_temporaries(Path(run_dir) / CHECKPOINTS):
        stray.unlink(missing_ok=True)
    if not (run_dir / CONFIG).exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)
