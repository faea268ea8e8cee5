"""`synccp sweep GRID.toml`: run a grid of pretraining runs, skipping finished ones.

A grid file has four parts (see configs/grids/ for real ones)::

    [sweep]                  # name, description, base (config TOML, relative to the grid file),
    seeds = [0, 1]           # out (relative to the working directory; default runs/<name>),
    jobs = 1                 # processes at once, launcher (e.g. "torchrun --nproc_per_node=2"),
                             # cost (run `synccp cost` after each run when the cost model exists),
                             # extends (a parent grid: inherit its [sweep], [fixed] and cells)
    [fixed]                  # overrides for every cell: `sparsity.update_every = 10`
    [grid]                   # key -> list: the cartesian product of all lists
    [[cells]]                # extra sub-grids: each table is its own (small) cartesian product

The cells are the union of the `[grid]` product and every `[[cells]]` product, each merged over
`[fixed]` (cell keys win), times the seeds. Every cell is validated with `load_config` before
anything runs. A cell's run directory is `<out>/<name>`, the name being a readable slug of the
cell's own keys, its seed and a hash of everything that defines the run, so editing the grid never
reuses a directory for a different run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from synccp.config import (ConfigError, config_to_dict, default_config_dict, load_config, normalized_config_dict,
                           parse_override)
from synccp.results import rundir

LOG = logging.getLogger(__name__)
Runner = Callable[[list[str], Path, dict[str, str]], int]
SWEEP_KEYS = ("name", "description", "base", "extends", "seeds", "out", "jobs", "launcher", "cost")
DEFAULTS = {"train.progress": False}  # per-run progress bars would only clutter log.txt
# Keys always named in a run directory (value-only or with a short prefix); other keys appear
# (as <key><value>) only where a sub-grid sweeps them, all of them are in the hash.
LABELS = {"data.name": "{}", "method.name": "{}", "sparsity.algorithm": "{}",
          "sparsity.granularity": "{}", "sparsity.n": "n{}", "sparsity.m": "m{}",
          "sparsity.density": "d{}", "sparsity.density_gap": "gap{}", "sparsity.score_ema": "ema{}"}


class SweepError(ValueError):
    """The grid file is invalid; the message names the file, the cell and the key."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its own keys, its seed and every `--set` override it is launched with."""

    name: str
    seed: int
    overrides: dict[str, Any]
    settings: dict[str, Any]
    run_dir: Path

    def set_args(self) -> list[str]:
        """The `key=value` overrides (TOML literals) for `load_config` and `--set`."""
        return [f"{key}={_toml_literal(key, value)}" for key, value in self.settings.items()]


@dataclass(frozen=True)
class Grid:
    """A parsed grid file; `subgrids` holds `[grid]` then each `[[cells]]` as key -> values."""

    path: Path
    name: str
    description: str
    base: Path | None
    seeds: tuple[int, ...]
    out: Path
    jobs: int
    launcher: tuple[str, ...]
    cost: bool
    fixed: dict[str, Any]
    subgrids: tuple[dict[str, tuple], ...]


@dataclass
class SweepResult:
    """What a sweep did (or, with `dry_run`, would do): the action per cell and the outcomes."""

    grid: Grid
    cells: list[Cell]
    actions: dict[str, str]
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # why a cell is a `conflict`
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def _flat(table: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _flatten(table: Any, where: str, path: Path) -> dict[str, Any]:
    """`{"sparsity": {"density": x}}` or `{"sparsity.density": x}` -> `{"sparsity.density": x}`."""
    if not isinstance(table, dict):
        raise SweepError(f"{path}: {where} must be a table, got {table!r}")
    flat = _flat(table)
    for key in flat:
        parts = key.split(".")
        if len(parts) != 2 or not all(parts):
            raise SweepError(f"{path}: {where} key {key!r} must look like section.key "
                             f"(e.g. sparsity.density)")
        if key == "train.seed":
            raise SweepError(f"{path}: {where} sets train.seed; list seeds in [sweep] seeds instead")
    return flat


def _subgrid(table: Any, where: str, path: Path) -> dict[str, tuple]:
    """A table whose values are scalars or non-empty lists of scalars -> key -> tuple of values."""
    axes = {}
    for key, value in _flatten(table, where, path).items():
        values = tuple(value) if isinstance(value, list) else (value,)
        if not values:
            raise SweepError(f"{path}: {where} key {key!r} has an empty list of values")
        for item in values:
            _toml_literal(key, item, path=path, where=where)
        axes[key] = values
    return axes


def _toml_literal(key: str, value: Any, *, path: Path | None = None, where: str = "") -> str:
    """A scalar as the TOML literal `parse_override` reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise SweepError(f"{path}: {where} key {key!r} must be a string, number or boolean "
                     f"(or a list of them), got {value!r}")


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise SweepError(f"grid file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"grid file {str(path)!r} is not valid TOML: {err}") from err
    unknown = sorted(set(raw) - {"sweep", "fixed", "grid", "cells"})
    if unknown:
        raise SweepError(f"{path}: unknown section(s) {unknown} (known: sweep, fixed, grid, cells)")
    table = raw.setdefault("sweep", {})
    if not isinstance(table, dict):
        raise SweepError(f"{path}: [sweep] must be a table, got {table!r}")
    unknown = sorted(set(table) - set(SWEEP_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown [sweep] key(s) {unknown} (known: {', '.join(SWEEP_KEYS)})")
    for key in ("base", "extends"):  # paths are relative to the file that names them
        if key in table:
            table[key] = str((path.parent / _typed(table, key, str, "", path)).resolve())
    raw["fixed"] = _flatten(raw.get("fixed", {}), "[fixed]", path)
    return raw


def _read_grid(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The raw grid, with `[sweep] extends` applied: the parent's [sweep] keys (but name and out)
    and [fixed] are inherited and overridden; its cells are kept unless this file has its own."""
    if path.resolve() in chain:
        raise SweepError(f"{path}: [sweep] extends forms a cycle ({' -> '.join(map(str, chain))})")
    raw = _read_toml(path)
    parent_path = raw["sweep"].pop("extends", None)
    if parent_path is None:
        return raw
    parent = _read_grid(Path(parent_path), (*chain, path.resolve()))
    inherited = {k: v for k, v in parent["sweep"].items() if k not in ("name", "out")}
    merged = {"sweep": {**inherited, **raw["sweep"]}, "fixed": {**parent["fixed"], **raw["fixed"]}}
    source = raw if ("grid" in raw or "cells" in raw) else parent
    merged.update({k: source[k] for k in ("grid", "cells") if k in source})
    return merged


def _typed(table: dict, key: str, kind: type, default: Any, path: Path) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SweepError(f"{path}: [sweep] {key} must be {kind.__name__}, got {value!r}")
    return value


def _fixed(raw_fixed: dict, overrides: Sequence[str], path: Path) -> dict[str, Any]:
    """[fixed] plus command-line `key=value` overrides (which win); lists are not allowed here."""
    fixed = dict(raw_fixed)
    for text in overrides:
        try:
            (section, name), value = parse_override(text)
        except ConfigError as err:
            raise SweepError(f"{path}: --set {text!r}: {err}") from err
        fixed[f"{section}.{name}"] = value
    _flatten(fixed, "[fixed]", path)  # checks the key shape and train.seed
    for key, value in fixed.items():
        if isinstance(value, list):
            raise SweepError(f"{path}: [fixed] key {key!r} is a list; put lists in [grid] or [[cells]]")
        _toml_literal(key, value, path=path, where="[fixed]")
    return fixed


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> Grid:
    """Parse and check a grid file (and the file it `extends`); `overrides` (`key=value`) are
    added to [fixed]. Errors name the file and the key; cells are checked by `validate`."""
    path = Path(path)
    raw = _read_grid(path)
    table = raw["sweep"]
    name = _typed(table, "name", str, path.stem, path)
    seeds = _typed(table, "seeds", list, [0], path)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SweepError(f"{path}: [sweep] seeds must be a non-empty list of integers, got {seeds!r}")
    jobs = _typed(table, "jobs", int, 1, path)
    if jobs < 1:
        raise SweepError(f"{path}: [sweep] jobs must be >= 1, got {jobs}")
    base = Path(table["base"]) if "base" in table else None
    if base is not None and not base.is_file():
        raise SweepError(f"{path}: [sweep] base {str(base)!r} does not exist")
    cells = raw.get("cells", [])
    if not isinstance(cells, list):
        raise SweepError(f"{path}: cells must be an array of tables ([[cells]]), got {cells!r}")
    subgrids = [_subgrid(raw["grid"], "[grid]", path)] if "grid" in raw else []
    subgrids += [_subgrid(cell, f"[[cells]] #{i + 1}", path) for i, cell in enumerate(cells)]
    return Grid(path=path, name=name, description=_typed(table, "description", str, "", path),
                base=base, seeds=tuple(seeds), out=Path(_typed(table, "out", str, f"runs/{name}", path)),
                jobs=jobs, launcher=tuple(shlex.split(_typed(table, "launcher", str, "", path))),
                cost=_typed(table, "cost", bool, True, path), fixed=_fixed(raw["fixed"], overrides, path),
                subgrids=tuple(subgrids) or ({},))


def _slug_value(value: Any) -> str:
    text = ("true" if value else "false") if isinstance(value, bool) else (
        f"{value:g}" if isinstance(value, float) else str(value))
    return "".join(c if c.isalnum() or c in ".+-" else "-" for c in text)


def _digest(identity: Any) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]


def cell_name(labels: dict[str, Any], seed: int, digest: str) -> str:
    """`<label>_..._s<seed>_<digest>`, e.g. `byol_synccp_nm_n2_m4_d0.5_s0_1a2b3c`: readable from
    the cell's labels; the digest of everything that defines the run keeps runs apart."""
    parts = [LABELS.get(key, key.split(".")[-1].replace("_", "") + "{}").format(_slug_value(value))
             for key, value in labels.items()]
    slug = "_".join(parts)[:120]
    return f"{slug}_s{seed}_{digest}" if slug else f"s{seed}_{digest}"


def plan(grid: Grid, *, out: Path | None = None) -> list[Cell]:
    """Every cell of the grid, in file order (sub-grid, product, then seed); duplicates dropped."""
    base_raw = tomllib.loads(grid.base.read_text()) if grid.base else default_config_dict()
    out = Path(out) if out is not None else grid.out
    cells: dict[str, Cell] = {}
    for axes in grid.subgrids:
        for values in itertools.product(*axes.values()):
            overrides = dict(zip(axes, values))
            labels = {k: v for k, v in overrides.items() if k in LABELS or len(axes[k]) > 1}
            for seed in grid.seeds:
                settings = {**DEFAULTS, **grid.fixed, **overrides, "train.seed": seed}
                digest = _digest({"base": base_raw, "settings": settings})
                if digest in cells:
                    LOG.warning("%s: cell %s appears twice; running it once", grid.path, cells[digest].name)
                    continue
                name = cell_name(labels, seed, digest)
                cells[digest] = Cell(name=name, seed=seed, overrides=overrides, settings=settings,
                                     run_dir=out / name)
    return list(cells.values())


def validate(grid: Grid, cells: list[Cell]) -> dict[str, dict]:
    """Resolve every cell with `load_config`; return name -> resolved config (config.json shape).

    Raises one `SweepError` listing the failing cells (file, cell, its keys and the config error)."""
    resolved, errors = {}, []
    for cell in cells:
        try:
            cfg = load_config(grid.base, cell.set_args())
        except ConfigError as err:
            keys = ", ".join(f"{k}={v!r}" for k, v in cell.overrides.items()) or "no own keys"
            errors.append(f"{grid.path}: cell {cell.name} ({keys}): {err}")
            continue
        resolved[cell.name] = json.loads(json.dumps(config_to_dict(cfg)))
    if errors:
        more = f"\n(and {len(errors) - 5} more failing cells)" if len(errors) > 5 else ""
        raise SweepError("\n".join(errors[:5]) + more)
    return resolved


def run_state(run_dir: Path, expected: dict | None = None, *, want_cost: bool = False) -> tuple[str, str]:
    """What a cell's directory needs: `new`, `restart` (started, never checkpointed), `resume`,
    `eval`, `cost`, `done`, or `conflict` (holds something else; the reason is returned too)."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        if run_dir.exists() and any(run_dir.iterdir()):
            return "conflict", f"{run_dir} holds files but no {rundir.CONFIG}"
        return "new", ""
    if expected is not None:
        found = normalized_config_dict(rundir.read_json(run_dir / rundir.CONFIG))
        expected = normalized_config_dict(expected)  # both as this version resolves them
        if found != expected:
            changed = sorted(f"{s}.{k}" for s in expected for k in expected[s]
                             if found.get(s, {}).get(k) != expected[s][k])
            return "conflict", f"{run_dir} holds a different run (differs in {', '.join(changed) or 'sections'})"
    if not (run_dir / rundir.SUMMARY).is_file():
        folder = run_dir / rundir.CHECKPOINTS
        has_checkpoint = folder.is_dir() and any(folder.glob("*.pt*"))
        return ("resume", "") if has_checkpoint else ("restart", "")
    if not (run_dir / rundir.EVAL).is_file():
        return "eval", ""
    if want_cost and not (run_dir / rundir.COST).is_file():
        return "cost", ""
    return "done", ""


def cost_available() -> bool:
    """Whether the training-cost model (`synccp.cost.run`) is installed."""
    try:
        return importlib.util.find_spec("synccp.cost.run") is not None
    except ImportError:
        return False


def run_sweep(path: str | Path, *, jobs: int | None = None, dry_run: bool = False,
              overrides: Sequence[str] = (), out: str | Path | None = None,
              runner: Runner | None = None, progress: bool = True) -> SweepResult:
    """Validate every cell of the grid file, then run what is not finished, `jobs` at a time.

    A failing cell is recorded in `SweepResult.failed` and the others go on. `runner(argv, log,
    env) -> exit code` replaces the subprocess launcher (tests). With `dry_run` nothing is
    written or launched; `actions` says what would happen to each cell. `overrides` (`key=value`,
    as `--set`) are added to the grid's [fixed]; `out` replaces its [sweep] out."""
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {jobs}")
    grid = load_grid(path, overrides)
    cells = plan(grid, out=Path(out) if out is not None else None)
    resolved = validate(grid, cells)
    want_cost = grid.cost and cost_available()
    result = SweepResult(grid=grid, cells=cells, actions={}, dry_run=dry_run)
    if grid.cost and not want_cost:
        result.warnings.append("the cost model (synccp.cost) is not installed: no cost.json is written")
        LOG.warning(result.warnings[-1])
    for cell in cells:
        action, reason = run_state(cell.run_dir, resolved[cell.name], want_cost=want_cost)
        result.actions[cell.name] = action
        if reason:
            result.reasons[cell.name] = reason
    if dry_run:
        return result
    execute(result, jobs=jobs or grid.jobs, want_cost=want_cost, runner=runner, progress=progress,
            python=sys.executable)
    return result


def _executable(argv: list[str], env: dict[str, str]) -> list[str]:
    """`argv` with a bare launcher name (e.g. `torchrun`) that is not on PATH taken from this
    interpreter's environment (`.venv/bin/torchrun` when synccp runs from a venv not activated)."""
    if os.sep in argv[0] or shutil.which(argv[0], path=env.get("PATH")):
        return argv
    sibling = Path(sys.executable).parent / argv[0]
    return [str(sibling), *argv[1:]] if sibling.is_file() else argv


def subprocess_runner(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Run `argv` with stdout and stderr appended to `log`; return its exit code."""
    argv = _executable(argv, env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"$ {shlex.join(argv)}\n")
        handle.flush()
        return subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False).returncode


def _steps(cell: Cell, action: str, grid: Grid, *, want_cost: bool, python: str) -> list[tuple[str, list[str]]]:
    """The commands a cell still needs: pretrain (through the launcher), eval, cost."""
    steps = []
    if action in ("new", "restart", "resume"):
        launch = [*grid.launcher, "-m", "synccp"] if grid.launcher else [python, "-m", "synccp"]
        argv = [*launch, "pretrain", "--out", str(cell.run_dir), "--no-eval"]
        argv += ["--config", str(grid.base)] if grid.base else []
        argv += [item for text in cell.set_args() for item in ("--set", text)]
        steps.append(("pretrain", argv + (["--resume"] if action == "resume" else [])))
    if action != "cost":
        steps.append(("eval", [python, "-m", "synccp", "eval", str(cell.run_dir)]))
    if want_cost:
        steps.append(("cost", [python, "-m", "synccp", "cost", str(cell.run_dir)]))
    return steps


def _pending_log(cell: Cell) -> Path:
    """Where a run's log goes until its directory exists (pretrain refuses a non-empty new dir)."""
    return cell.run_dir.parent / ".logs" / f"{cell.name}.txt"


def _log_for(cell: Cell) -> Path:
    return cell.run_dir / "log.txt" if (cell.run_dir / rundir.CONFIG).is_file() else _pending_log(cell)


def _adopt_pending_log(cell: Cell) -> None:
    """Append the pending log to `<run_dir>/log.txt` once the run directory exists."""
    pending = _pending_log(cell)
    if pending.is_file() and (cell.run_dir / rundir.CONFIG).is_file():
        with open(cell.run_dir / "log.txt", "a") as handle:
            handle.write(pending.read_text())
        pending.unlink()


def _clear_unstarted(cell: Cell) -> None:
    """Empty a run that was stopped before its first checkpoint, so it can start again."""
    ours = {rundir.CONFIG, rundir.METRICS, rundir.CHECKPOINTS, "log.txt"}
    strangers = [p.name for p in cell.run_dir.iterdir() if p.name not in ours and not p.name.startswith(".")]
    if strangers:
        raise rundir.RunDirError(f"cannot restart {cell.run_dir}: it also holds {sorted(strangers)}")
    log = cell.run_dir / "log.txt"
    if log.is_file():
        _pending_log(cell).parent.mkdir(parents=True, exist_ok=True)
        with open(_pending_log(cell), "a") as handle:
            handle.write(log.read_text())
    shutil.rmtree(cell.run_dir)


def _run_cell(cell: Cell, action: str, grid: Grid, *, want_cost: bool, runner: Runner,
              env: dict[str, str], python: str) -> tuple[str | None, list[str]]:
    """Run a cell's remaining steps; return (failure reason or None, warnings)."""
    warnings = []
    try:
        if action == "restart":
            _clear_unstarted(cell)
        for label, argv in _steps(cell, action, grid, want_cost=want_cost, python=python):
            code = runner(argv, _log_for(cell), env)
            _adopt_pending_log(cell)
            if code == 0:
                continue
            if label != "cost":
                return f"{label} exited with code {code}; see {_log_for(cell)}", warnings
            warnings.append(f"{cell.name}: cost exited with code {code}; see {_log_for(cell)}")
    except (OSError, rundir.RunDirError) as err:
        return f"{type(err).__name__}: {err}", warnings
    return None, warnings


def _child_env(jobs: int) -> dict[str, str]:
    """Unbuffered output; with several jobs, split the CPU threads between them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _postfix(bar: tqdm, result: SweepResult) -> None:
    bar.set_postfix(done=len(result.completed), skipped=len(result.skipped), failed=len(result.failed))


def execute(result: SweepResult, *, jobs: int, want_cost: bool, runner: Runner | None,
            progress: bool, python: str) -> None:
    """Run the planned actions `jobs` cells at a time, filling `result`; a progress bar over the grid."""
    for cell in result.cells:
        action = result.actions[cell.name]
        if action == "done":
            result.skipped.append(cell.name)
        elif action == "conflict":
            result.failed[cell.name] = result.reasons[cell.name]
    todo = [c for c in result.cells if result.actions[c.name] not in ("done", "conflict")]
    bar = tqdm(total=len(result.cells), initial=len(result.cells) - len(todo), unit="run",
               desc=f"sweep {result.grid.name}", disable=not progress or None, dynamic_ncols=True)
    _postfix(bar, result)
    env = _child_env(jobs)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(_run_cell, cell, result.actions[cell.name], result.grid, want_cost=want_cost,
                               runner=runner or subprocess_runner, env=env, python=python): cell
                   for cell in todo}
        for future in as_completed(futures):
            cell = futures[future]
            reason, warnings = future.result()
            result.warnings += warnings
            if reason is None:
                result.completed.append(cell.name)
            else:
                result.failed[cell.name] = reason
                LOG.error("sweep cell %s failed: %s", cell.name, reason)
            bar.update(1)
            _postfix(bar, result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def format_plan(result: SweepResult) -> str:
    """One line per cell: the action it needs and its run directory (for `--dry-run`)."""
    grid = result.grid
    out = result.cells[0].run_dir.parent if result.cells else grid.out
    launcher = f", launcher {shlex.join(grid.launcher)}" if grid.launcher else ""
    lines = [f"sweep {grid.name}: {len(result.cells)} cells from {grid.path} into {out}/ "
             f"(seeds {list(grid.seeds)}, jobs {grid.jobs}{launcher})"]
    lines += [f"  {result.actions[cell.name]:8s} {cell.name}"
              + (f"  ({result.reasons[cell.name]})" if cell.name in result.reasons else "")
              for cell in result.cells]
    counts = {a: list(result.actions.values()).count(a) for a in dict.fromkeys(result.actions.values())}
    lines.append("  " + ", ".join(f"{n} {a}" for a, n in counts.items()))
    return "\n".join(lines)


def format_summary(result: SweepResult) -> str:
    """Counts of completed / skipped / failed cells and the reason of each failure."""
    lines = [f"sweep {result.grid.name}: {len(result.completed)} completed, {len(result.skipped)} "
             f"skipped (already finished), {len(result.failed)} failed"]
    lines += [f"  FAILED {name}: {reason}" for name, reason in result.failed.items()]
    lines += [f"  warning: {text}" for text in result.warnings]
    return "\n".join(lines)
