"""Sweep cells: what one run of a grid is, its identity, its run-directory name.

A cell's identity is 64 bits of SHA-256 of its resolved config (as `synccp pretrain` resolves
it, types normalised: `lr = 1` and `lr = 1.0` are one run) without the keys that cannot change
the result (`rundir.HARMLESS_KEYS`) or that were added later and hold the value that reproduces
older runs (`rundir.LATER_KEYS`); its name is a readable slug of its own keys, its seed and
that identity. Run directories named by earlier versions (24 bits of the grid settings) are
reused when they hold exactly the cell's resolved config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synccp import rundir
from synccp.config import apply_overrides

LOG = logging.getLogger(__name__)

# Keys always named in a run directory (value-only or with a short prefix); other keys appear
# (as <key><value>) only where a sub-grid sweeps them; all of them are in the identity.
LABELS = {"data.name": "{}", "method.name": "{}", "sparsity.algorithm": "{}",
          "sparsity.granularity": "{}", "sparsity.n": "n{}", "sparsity.m": "m{}",
          "sparsity.density": "d{}", "sparsity.density_gap": "gap{}", "sparsity.score_ema": "ema{}",
          "train.compile": "compile{}"}


class SweepError(ValueError):
    """The grid file is invalid; the message names the file, the cell and the key."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its own keys, its seed and every `--set` override it runs with."""

    name: str
    seed: int
    overrides: dict[str, Any]
    settings: dict[str, Any]
    run_dir: Path
    resolved: dict[str, Any] = field(default_factory=dict, compare=False)  # config.json shape

    def set_args(self) -> list[str]:
        """The `key=value` overrides (TOML literals) for `load_config` and `--set`."""
        return [f"{key}={_toml_literal(key, value)}" for key, value in self.settings.items()]


def _toml_literal(key: str, value: Any, *, path: Path | None = None, where: str = "") -> str:
    """A scalar as the TOML literal `parse_override` reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise SweepError(
        f"{path}: {where} key {key!r} must be a string, number or boolean "
        f"(or a list of them), got {value!r}"
    )


def _slug_value(value: Any) -> str:
    text = (
        ("true" if value else "false")
        if isinstance(value, bool)
        else (f"{value:g}" if isinstance(value, float) else str(value))
    )
    return "".join(c if c.isalnum() or c in ".+-" else "-" for c in text)


def _legacy_digest(identity: Any) -> str:
    """The 24-bit digest of the grid settings that named run directories before identities."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]


_ABSENT = object()


def cell_identity(resolved: dict[str, Any]) -> str:
    """64 bits (hex) of SHA-256 of a resolved config, without the keys that cannot change it
    and without the later keys at the value that reproduces older runs (`rundir.LATER_KEYS`)."""

    def kept_key(key: str, value: Any) -> bool:
        return key not in rundir.HARMLESS_KEYS and rundir.LATER_KEYS.get(key, _ABSENT) != value

    kept = {
        section: {k: v for k, v in table.items() if kept_key(f"{section}.{k}", v)}
        for section, table in resolved.items()
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def cell_name(labels: dict[str, Any], seed: int, digest: str) -> str:
    """`<label>_..._s<seed>_<digest>`, e.g. `byol_synccp_nm_n2_m4_d0.5_s0_1a2b3c`: readable from
    the cell's labels; the digest of everything that defines the run keeps runs apart."""
    parts = [
        LABELS.get(key, key.split(".")[-1].replace("_", "") + "{}").format(_slug_value(value))
        for key, value in labels.items()
    ]
    slug = "_".join(parts)[:120]
    return f"{slug}_s{seed}_{digest}" if slug else f"s{seed}_{digest}"


def _resolve(base_raw: dict, cell: Cell) -> dict[str, Any]:
    """The cell's config as `synccp pretrain --config base --set ...` resolves it (config.json
    shape); `ConfigError` when it is invalid."""
    cfg = apply_overrides(base_raw, cell.set_args())  # exactly `load_config`'s rules
    # frozen dataclasses of scalars: a shallow dict per section is config_to_dict
    return {f.name: dict(vars(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)}


def _reuse_legacy(cell: Cell, legacy: Path) -> Cell:
    """`cell` in the directory an earlier version named `legacy`, when that one holds exactly this
    run and the new name has nothing yet."""
    if cell.run_dir.exists() or not (legacy / rundir.CONFIG).is_file():
        return cell
    try:
        if rundir.config_differences(
            rundir.read_json(legacy / rundir.CONFIG), cell.resolved, ignore=()
        ):
            return cell
    except rundir.RunDirError:
        return cell
    LOG.info("cell %s: reusing %s (named by an earlier synccp)", cell.name, legacy)
    return Cell(
        name=legacy.name,
        seed=cell.seed,
        overrides=cell.overrides,
        settings=cell.settings,
        run_dir=legacy,
        resolved=cell.resolved,
    )
