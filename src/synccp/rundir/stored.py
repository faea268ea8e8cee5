"""The stored `config.json` of a run: read as specs, compared with a wanted run, checked before
a run starts or resumes in the directory. The only module of the run directory that reads the
config schema (`synccp.config`): the packages below it receive the `RunSpec` it returns.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from synccp.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    load_resolved,
    normalized_config_dict,
)
from synccp.config.specs import run_spec
from synccp.rundir.atomic import stray_temporaries, write_json
from synccp.rundir.files import RunDirError, read_json
from synccp.rundir.layout import CHECKPOINTS, CONFIG, HARMLESS_KEYS, SUMMARY, foreign_entries
from synccp.rundir.lock import raise_if_locked
from synccp.specs import RunSpec


def _flat(config: dict) -> dict[str, Any]:
    """`{"train": {"lr": 1}}` -> `{"train.lr": 1}`; a section that is not a table stays `[name]`."""
    flat = {}
    for section, table in config.items():
        if isinstance(table, dict):
            flat.update({f"{section}.{key}": value for key, value in table.items()})
        else:
            flat[f"[{section}]"] = table
    return flat


def config_differences(
    stored: dict, wanted: dict, *, ignore: tuple[str, ...] = HARMLESS_KEYS
) -> list[str]:
    """The `section.key`s where two configs differ, both as this version resolves them (older
    runs gain today's defaults), leaving out `ignore`."""
    old, new = _flat(normalized_config_dict(stored)), _flat(normalized_config_dict(wanted))
    missing = object()
    return sorted(
        key
        for key in set(old) | set(new)
        if key not in ignore and old.get(key, missing) != new.get(key, missing)
    )


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
        detail = ", ".join(
            f"{k} (stored {flat_old.get(k)!r}, given {flat_new.get(k)!r})" for k in changed[:5]
        )
        raise RunDirError(
            f"--resume continues the run stored in {run_dir / CONFIG}; the given "
            f"--config/--set would change it: {detail}. Resume with --out and --resume "
            f"alone (only {', '.join(HARMLESS_KEYS)} may be changed on resume)"
        )
    harmless: dict[str, dict[str, Any]] = {}
    for key in HARMLESS_KEYS:
        section, name = key.split(".")
        harmless.setdefault(section, {})[name] = new[section][name]
    return dataclasses.replace(
        stored, **{s: dataclasses.replace(getattr(stored, s), **v) for s, v in harmless.items()}
    )


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """The stored `config.json` as this version resolves it (older runs gain today's defaults):
    the record reports compare and tabulate."""
    return normalized_config_dict(read_json(Path(run_dir) / CONFIG))


def default_record() -> dict[str, Any]:
    """The config.json of a run that sets nothing: every key at the schema's default."""
    return config_to_dict(Config())


def read_spec(run_dir: str | Path) -> RunSpec:
    """The `RunSpec` of the run stored in `run_dir`; `ConfigError` naming config.json and the key
    when it is not a valid config (older runs are read as this version resolves them)."""
    return run_spec(load_resolved(Path(run_dir) / CONFIG))


def spec_of(path: str | Path) -> RunSpec:
    """The `RunSpec` of a run directory, or of a config file (TOML, or a run's config.json)."""
    path = Path(path)
    return read_spec(path) if path.is_dir() else run_spec(load_config(path))


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
            raise RunDirError(
                f"{run_dir} is not empty and holds no synccp run (it holds "
                f"{', '.join(sorted(p.name for p in others)[:5])}); choose another --out"
            )
        return
    changed = config_differences(read_json(existing), config)
    if changed:
        raise RunDirError(
            f"{run_dir} already holds a different run (differs in: "
            f"{', '.join(changed)}); choose another --out"
        )
    if not resume:
        state = "finished" if (run_dir / SUMMARY).exists() else "interrupted"
        raise RunDirError(
            f"{run_dir} already holds this run ({state}); pass --resume to "
            f"continue it or choose another --out"
        )


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
