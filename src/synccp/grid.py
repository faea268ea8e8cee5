"""Grid files for `synccp sweep`: parse one, expand it into cells, validate every cell.

A grid file has four parts (see configs/grids/ for real ones)::

    [sweep]                  # name, description, base (config TOML, relative to the grid file),
    seeds = [0, 1]           # out (relative to the working directory; default runs/<name>),
    jobs = 1                 # processes at once, launcher (e.g. "torchrun --nproc_per_node=2"),
                             # cost (run `synccp cost` after each run when the cost model exists),
                             # extends (a parent grid: inherit its [sweep], [fixed] and cells),
                             # minutes_per_run (measured; `make study` estimates the time left):
                             # a number, or a table by method (`{ mocov2 = 80 }`)
    [fixed]                  # overrides for every cell: `sparsity.update_every = 10`
    [grid]                   # key -> list: the cartesian product of all lists
    [[cells]]                # extra sub-grids: each table is its own (small) cartesian product;
    seeds = [0, 1, 2]        # a `[[cells]]` table may list its own seeds instead of [sweep]'s

The cells are the union of the `[grid]` product and every `[[cells]]` product, each merged over
`[fixed]` (cell keys win), times the seeds (the sub-grid's own, else [sweep]'s). Every cell is
resolved and validated (as `load_config` does) before anything runs. A cell's run directory is
`<out>/<name>`, the name being a readable slug of the cell's own keys, its seed and the cell's
identity: 64 bits of SHA-256 of its resolved config (types normalised: `lr = 1` and `lr = 1.0`
are one run; `train.progress`/`train.log_every` left out, they cannot change the result), so
editing the grid never reuses a directory for a different run and two cells that resolve to
the same run are one cell. A run directory named by the identity of earlier versions (24 bits of
the grid settings) is reused when it holds exactly the cell's resolved config.
"""

from __future__ import annotations

import itertools
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synccp import rundir
from synccp.cells import (
    LABELS,
    Cell,
    SweepError,
    _legacy_digest,
    _resolve,
    _reuse_legacy,
    _toml_literal,
    cell_identity,
    cell_name,
)
from synccp.config import ConfigError, default_config_dict, parse_override, tomllib
from synccp.methods.rows import METHODS
from synccp.study import MinutesPerRun

__all__ = ["Cell", "Grid", "LABELS", "SubGrid", "SweepError", "cell_identity", "cell_name",
           "load_grid",
           "plan", "validate"]

LOG = logging.getLogger(__name__)
SWEEP_KEYS = ("name", "description", "base", "extends", "seeds", "out", "jobs", "launcher", "cost",
              "minutes_per_run")
DEFAULTS = {"train.progress": False}  # per-run progress bars would only clutter log.txt
@dataclass(frozen=True)
class SubGrid:
    """`[grid]` or one `[[cells]]` table: key -> values, and the seeds each product runs with."""

    axes: dict[str, tuple]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class Grid:
    """A parsed grid file; `subgrids` holds `[grid]` then each `[[cells]]`."""

    path: Path
    name: str
    description: str
    base: Path | None
    seeds: tuple[int, ...]
    out: Path
    jobs: int
    launcher: tuple[str, ...]
    cost: bool
    minutes_per_run: MinutesPerRun
    fixed: dict[str, Any]
    subgrids: tuple[SubGrid, ...]


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
            raise SweepError(f"{path}: {where} sets train.seed; list seeds in [sweep] seeds "
                             "instead")
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
        raise SweepError(f"{path}: unknown [sweep] key(s) {unknown} "
                         f"(known: {', '.join(SWEEP_KEYS)})")
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
            raise SweepError(f"{path}: [fixed] key {key!r} is a list; put lists in [grid] or "
                             "[[cells]]")
        _toml_literal(key, value, path=path, where="[fixed]")
    return fixed


def _minutes(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SweepError(f"{path}: [sweep] {key} must be a number > 0, got {value!r}")
    return float(value)


def _minutes_per_run(value: Any, path: Path) -> MinutesPerRun:
    """`minutes_per_run`: one figure for every method, or a table of figures by method name."""
    if value is None or not isinstance(value, dict):
        return None if value is None else _minutes(value, "minutes_per_run", path)
    for method in value:
        if method not in METHODS:
            raise SweepError(f"{path}: [sweep] minutes_per_run names an unknown method "
                             f"{method!r} (known: {', '.join(sorted(METHODS))})")
    return {method: _minutes(figure, f"minutes_per_run.{method}", path)
            for method, figure in value.items()}


def load_grid(path: str | Path, overrides: Sequence[str] = ()) -> Grid:
    """Parse and check a grid file (and the file it `extends`); `overrides` (`key=value`) are
    added to [fixed]. Errors name the file and the key; cells are checked by `validate`."""
    path = Path(path)
    raw = _read_grid(path)
    table = raw["sweep"]
    name = _typed(table, "name", str, path.stem, path)
    seeds = _seeds(table.get("seeds", [0]), "[sweep]", path)
    jobs = _typed(table, "jobs", int, 1, path)
    if jobs < 1:
        raise SweepError(f"{path}: [sweep] jobs must be >= 1, got {jobs}")
    minutes = _minutes_per_run(table.get("minutes_per_run"), path)
    base = Path(table["base"]) if "base" in table else None
    if base is not None and not base.is_file():
        raise SweepError(f"{path}: [sweep] base {str(base)!r} does not exist")
    cells = raw.get("cells", [])
    if not isinstance(cells, list):
        raise SweepError(f"{path}: cells must be an array of tables ([[cells]]), got {cells!r}")
    subgrids = [SubGrid(_subgrid(raw["grid"], "[grid]", path), seeds)] if "grid" in raw else []
    for i, cell in enumerate(cells):
        where = f"[[cells]] #{i + 1}"
        own = cell.pop("seeds", None) if isinstance(cell, dict) else None
        subgrids.append(SubGrid(_subgrid(cell, where, path),
                                seeds if own is None else _seeds(own, where, path)))
    return Grid(path=path, name=name, description=_typed(table, "description", str, "", path),
                base=base, seeds=seeds, out=Path(_typed(table, "out", str, f"runs/{name}", path)),
                jobs=jobs, launcher=tuple(shlex.split(_typed(table, "launcher", str, "", path))),
                cost=_typed(table, "cost", bool, True, path),
                minutes_per_run=minutes,
                fixed=_fixed(raw["fixed"], overrides, path),
                subgrids=tuple(subgrids) or (SubGrid({}, seeds),))


def _seeds(value: Any, where: str, path: Path) -> tuple[int, ...]:
    integers = isinstance(value, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                               for s in value)
    if not integers or not value:
        raise SweepError(f"{path}: {where} seeds must be a non-empty list of integers, "
                         f"got {value!r}")
    return tuple(value)


def plan(grid: Grid, *, out: Path | None = None) -> list[Cell]:
    """Every cell of the grid, resolved and validated, in file order (sub-grid, product, then
    seed); cells that resolve to the same run are kept once. `SweepError` lists invalid cells."""
    base_raw = tomllib.loads(grid.base.read_text()) if grid.base else default_config_dict()
    out = Path(out) if out is not None else grid.out
    cells: dict[str, Cell] = {}
    errors = []
    for sub in grid.subgrids:
        for values in itertools.product(*sub.axes.values()):
            overrides = dict(zip(sub.axes, values, strict=True))
            labels = {k: v for k, v in overrides.items() if k in LABELS or len(sub.axes[k]) > 1}
            for seed in sub.seeds:
                settings = {**DEFAULTS, **grid.fixed, **overrides, "train.seed": seed}
                draft = Cell(name=cell_name(labels, seed, "?"), seed=seed, overrides=overrides,
                             settings=settings, run_dir=out)
                try:
                    resolved = _resolve(base_raw, draft)
                except ConfigError as err:
                    keys = ", ".join(f"{k}={v!r}" for k, v in overrides.items()) or "no own keys"
                    errors.append(f"{grid.path}: cell {draft.name} ({keys}): {err}")
                    continue
                identity = cell_identity(resolved)
                if identity in cells:
                    _same_run_twice(grid, cells[identity], resolved)
                    continue
                name = cell_name(labels, seed, identity)
                legacy = out / cell_name(labels, seed,
                                         _legacy_digest({"base": base_raw, "settings": settings}))
                cells[identity] = _reuse_legacy(Cell(name=name, seed=seed, overrides=overrides,
                                                     settings=settings,
                                                     run_dir=out / name, resolved=resolved), legacy)
    if errors:
        more = f"\n(and {len(errors) - 5} more failing cells)" if len(errors) > 5 else ""
        raise SweepError("\n".join(errors[:5]) + more)
    return list(cells.values())


def _same_run_twice(grid: Grid, first: Cell, resolved: dict) -> None:
    """A cell whose identity an earlier cell has: the same run (logged), or a digest collision."""
    if rundir.config_differences(first.resolved, resolved):
        raise SweepError(f"{grid.path}: two different cells share the identity of {first.name}; "
                         f"rename nothing, report this (a 64-bit digest collision)")
    LOG.warning("%s: cell %s appears twice (the same resolved run); running it once", grid.path,
                first.name)


def validate(grid: Grid, cells: list[Cell]) -> dict[str, dict]:
    """Name -> resolved config (config.json shape) of every cell; `plan` refused invalid ones."""
    return {cell.name: cell.resolved for cell in cells}
