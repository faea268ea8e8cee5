"""The run directory (DESIGN.md §3): atomic file writes and the metrics log.

Every file is written to a temporary sibling and renamed over the target (`os.replace` is atomic
on POSIX), so a crash or a kill leaves either the old or the new file, never a torn one — plus,
at worst, a stray temporary `.<name>.<random>.tmp`, which the next run of the directory removes.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synccp.config import Config, ConfigError, config_from_dict, config_to_dict, normalized_config_dict
from synccp.results.files import RunDirError, read_json, read_metrics, read_summary
from synccp.results.lock import LOCK, raise_if_locked

__all__ = ["RunDirError", "read_json", "read_metrics", "read_summary"]  # re-exported: read_* live in files.py

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
MODEL = "model.safetensors"
MASKS = "masks.safetensors"
EVAL = "eval.json"
COST = "cost.json"
CHECKPOINTS = "checkpoints"
_TEMPORARY = re.compile(r"^\..+\.[^.]+\.tmp$")  # atomic_write's mkstemp names: .<name>.<random>.tmp
# Keys a resumed run may change: they decide what is shown and how often it is logged, never the
# result (the optimizer steps, masks and exported model are the same).
HARMLESS_KEYS = ("train.progress", "train.log_every")


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
    except (OSError, RuntimeError) as err:  # a full disk: torch.save raises RuntimeError, safetensors its own
        raise _write_error(path, err) from err
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        raise _write_error(path, err) from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_error(path: Path, err: Exception) -> OSError:
    """An OSError naming `path`, why the write failed, and the free space left beside it."""
    try:
        free = f"; {shutil.disk_usage(path.parent).free // 2**20} MiB free on its file system"
    except OSError:
        free = ""
    reason = getattr(err, "strerror", None) or str(err).splitlines()[0][:200]
    return OSError(getattr(err, "errno", None) or errno.EIO,
                   f"cannot write {path}: {reason} (the previous file, if any, is intact{free})")


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


def _flat(config: dict) -> dict[str, Any]:
    """`{"train": {"lr": 1}}` -> `{"train.lr": 1}`; a section that is not a table stays `[name]`."""
    flat = {}
    for section, table in config.items():
        if isinstance(table, dict):
            flat.update({f"{section}.{key}": value for key, value in table.items()})
        else:
            flat[f"[{section}]"] = table
    return flat


def config_differences(stored: dict, wanted: dict, *, ignore: tuple[str, ...] = HARMLESS_KEYS) -> list[str]:
    """The `section.key`s where two configs differ, both as this version resolves them (older
    runs gain today's defaults), leaving out `ignore`."""
    old, new = _flat(normalized_config_dict(stored)), _flat(normalized_config_dict(wanted))
    missing = object()
    return sorted(key for key in set(old) | set(new)
                  if key not in ignore and old.get(key, missing) != new.get(key, missing))


def read_config(run_dir: str | Path) -> Config:
    """The run's stored `config.json` as a `Config` (older runs as this version resolves them);
    `RunDirError` naming the file and the key when it is not a valid config."""
    path = Path(run_dir) / CONFIG
    try:
        return config_from_dict(normalized_config_dict(read_json(path)))
    except ConfigError as err:
        raise RunDirError(f"{path}: {err}") from None


def resume_config(run_dir: str | Path, requested: Config | None) -> Config:
    """The config a `--resume` of `run_dir` runs: the stored `config.json`. A `requested` config
    (from --config/--set) may differ from it only in `HARMLESS_KEYS`, which it then sets."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():  # a writer that has locked the directory but not written config.json yet
        raise_if_locked(run_dir)
    if not (run_dir / CONFIG).exists():
        raise RunDirError(f"--resume: {run_dir} holds no run ({CONFIG} is missing)")
    stored = read_config(run_dir)
    if requested is None:
        return stored
    old, new = config_to_dict(stored), config_to_dict(requested)
    changed = config_differences(old, new)
    if changed:
        flat_old, flat_new = _flat(old), _flat(new)
        detail = ", ".join(f"{k} (stored {flat_old.get(k)!r}, given {flat_new.get(k)!r})" for k in changed[:5])
        raise RunDirError(f"--resume continues the run stored in {run_dir / CONFIG}; the given "
                          f"--config/--set would change it: {detail}. Resume with --out and --resume "
                          f"alone (only {', '.join(HARMLESS_KEYS)} may be changed on resume)")
    harmless = {}
    for key in HARMLESS_KEYS:
        section, name = key.split(".")
        harmless.setdefault(section, {})[name] = new[section][name]
    return dataclasses.replace(stored, **{s: dataclasses.replace(getattr(stored, s), **v)
                                          for s, v in harmless.items()})


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


def check_run_dir(run_dir: Path, config: dict, *, resume: bool, probe_lock: bool = True) -> None:
    """Raise `RunDirError` (touching nothing) unless `run_dir` can take this run: a new run needs
    a missing or empty directory (a stray temporary of a killed write or a released lock counts as
    empty), a resumed one the same run's `config.json`, and nobody else may hold its lock. A
    different run is refused, and so is this run again without `resume`."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--out {run_dir} is a file, not a directory; choose another --out")
    if probe_lock and run_dir.is_dir():
        raise_if_locked(run_dir)
    existing = run_dir / CONFIG
    if not existing.exists():
        if resume:
            raise RunDirError(f"--resume: {run_dir} holds no run ({CONFIG} is missing)")
        others = foreign_entries(run_dir) if run_dir.exists() else []
        if others:
            raise RunDirError(f"{run_dir} is not empty and holds no synccp run (it holds "
                              f"{', '.join(sorted(p.name for p in others)[:5])}); choose another --out")
        return
    changed = config_differences(read_json(existing), config)
    if changed:
        raise RunDirError(f"{run_dir} already holds a different run (differs in: "
                          f"{', '.join(changed)}); choose another --out")
    if not resume:
        state = "finished" if (run_dir / SUMMARY).exists() else "interrupted"
        raise RunDirError(f"{run_dir} already holds this run ({state}); pass --resume to "
                          f"continue it or choose another --out")


def prepare_run_dir(run_dir: Path, config: dict, *, resume: bool) -> None:
    """Create `run_dir` for a new run, or check it holds this same run when resuming; the caller
    holds the run directory's lock (`results.lock.RunLock`).

    Refuses (without touching anything) a directory that holds a different run, or a finished
    run when not resuming (`check_run_dir`). Removes temporaries of writes a kill interrupted.
    """
    check_run_dir(run_dir, config, resume=resume, probe_lock=False)
    for stray in stray_temporaries(run_dir) + stray_temporaries(Path(run_dir) / CHECKPOINTS):
        stray.unlink(missing_ok=True)
    if not (run_dir / CONFIG).exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)
