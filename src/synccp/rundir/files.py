"""Reading what a run directory holds: every file is validated where it is read.

A file that is missing, unreadable, not JSON / safetensors, or of the wrong shape raises
`RunDirError` naming the file (and the key, or the line of metrics.jsonl), never a traceback
from deep inside a consumer: a missing file is reported as missing, an unreadable one as
unreadable (with the reason), a directory where a file belongs as a directory.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import torch

MAX_JSON_BYTES = 64 << 20  # config/summary/eval/cost files are kilobytes; refuse a runaway one


class RunDirError(ValueError):
    """The run directory cannot be used as asked (holds another run, is missing files, ...)."""


def read_bytes(path: str | Path, *, what: str = "", limit: int | None = None) -> bytes:
    """The bytes of `path`, or `RunDirError` saying why not (missing / directory / unreadable)."""
    path = Path(path)
    hint = f" ({what})" if what else ""
    try:
        if limit is not None and path.stat().st_size > limit:
            raise RunDirError(f"{path}{hint} is {path.stat().st_size} bytes, more than the {limit} "
                              f"such a file can hold; it is not a synccp file")
        return path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path}{hint} does not exist") from None
    except IsADirectoryError:
        raise RunDirError(f"{path}{hint} is a directory, not a file") from None
    except NotADirectoryError:
        raise RunDirError(f"{path}{hint} does not exist (a parent of it is a file)") from None
    except OSError as err:
        raise RunDirError(f"{path}{hint} exists but cannot be read: {err.strerror or err}") from err


def read_json(path: str | Path, *, expect: type | None = dict) -> Any:
    """Parse `path` as JSON (UTF-8); `expect` is the type the top level must have."""
    path = Path(path)
    data = read_bytes(path, limit=MAX_JSON_BYTES)
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RunDirError(
            f"{path} is not valid JSON: not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON: {err}") from None
    except RecursionError:
        raise RunDirError(f"{path} is not valid JSON: nested too deeply") from None
    if expect is not None and not isinstance(value, expect):
        raise RunDirError(
            f"{path}: expected a JSON {_json_name(expect)} at the top level, got "
            f"{_json_name(type(value))}"
        )
    return value


def _json_name(kind: type) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        type(None): "null",
    }.get(kind, kind.__name__)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_summary(path: str | Path, *, need_sparsity: bool = True) -> dict:
    """`summary.json`: step counts (positive integers) and the final densities (in [0, 1]; checked
    when present, and required unless `need_sparsity` is False)."""
    path = Path(path)
    summary = read_json(path)
    for key in ("total_steps", "steps_per_epoch"):
        if not _integer(summary.get(key)) or summary[key] < 1:
            raise RunDirError(f"{path}: {key} must be a positive integer, got {summary.get(key)!r}")
    sparsity = summary.get("sparsity")
    if sparsity is None and not need_sparsity:
        return summary
    for branch in ("online", "second"):
        total = (
            sparsity.get(branch, {}).get("total")
            if isinstance(sparsity, dict) and isinstance(sparsity.get(branch), dict)
            else None
        )
        if not _number(total) or not 0.0 <= total <= 1.0:
            raise RunDirError(
                f"{path}: sparsity.{branch}.total must be a density in [0, 1], got {total!r}"
            )
    return summary


def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """All records of `metrics.jsonl` (optionally of one `kind`); a torn last line (a kill
    mid-append) is ignored, any other line that is not a record is an error naming the line."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    lines = read_bytes(path).split(b"\n")
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            if number == len(lines):
                # the torn last line of a killed append (complete lines end with a newline)
                continue
            raise RunDirError(f"{path} line {number} is not a JSON record ({err})") from None
        _check_record(record, path, number)
        if kind is None or record["kind"] == kind:
            records.append(record)
    return records


def _check_record(record: Any, path: Path, number: int) -> None:
    where = f"{path} line {number}"
    if not isinstance(record, dict):
        raise RunDirError(f"{where}: expected a JSON object, got {_json_name(type(record))}")
    if not isinstance(record.get("kind"), str):
        raise RunDirError(f"{where}: kind must be a string, got {record.get('kind')!r}")
    if not _integer(record.get("step")) or record["step"] < 0:
        raise RunDirError(f"{where}: step must be an integer >= 0, got {record.get('step')!r}")
    density = record.get("density", {})
    if not isinstance(density, dict):
        raise RunDirError(f"{where}: density must be an object, got {density!r}")
    for branch, table in density.items():
        layers = table.get("layers", {}) if isinstance(table, dict) else None
        if not isinstance(layers, dict) or not all(
            _number(v) and 0 <= v <= 1 for v in layers.values()
        ):
            raise RunDirError(
                f"{where}: density.{branch}.layers must map layer names to densities in [0, 1]"
            )


def read_tensors(path: str | Path, *, what: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, or `RunDirError` naming the file (corrupt, torn,
    not safetensors)."""
    from safetensors.torch import load

    data = read_bytes(path, what=what)
    try:
        return load(data)
    except (
        Exception
    ) as err:  # safetensors raises its own SafetensorError (an Exception) for bad files
        raise RunDirError(f"{path} is not a readable safetensors file ({err})") from None


def check_state_dict(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: str | Path
) -> None:
    """`tensors` has exactly `expected`'s keys, shapes and dtypes (a model file of this run)."""
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise RunDirError(
            f"{path} does not hold this run's model: missing {missing[:3]}, unexpected "
            f"{extra[:3]} ({len(missing)} missing, {len(extra)} unexpected keys)"
        )
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise RunDirError(
                f"{path}: {key} is {got.dtype} {tuple(got.shape)}, this run's model "
                f"needs {want.dtype} {tuple(want.shape)}"
            )


def check_masks(
    masks: Mapping[str, torch.Tensor],
    path: str | Path,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> None:
    """`masks.safetensors`: bool tensors keyed `online/<name>` and `second/<name>`, the two
    branches over the same layers with the same shapes (those of `shapes`, for layers it names)."""
    if not masks:
        raise RunDirError(f"{path} holds no masks")
    for key, mask in masks.items():
        branch, _, name = key.partition("/")
        if branch not in ("online", "second") or not name:
            raise RunDirError(f"{path}: key {key!r} is not online/<layer> or second/<layer>")
        if mask.dtype != torch.bool:
            raise RunDirError(f"{path}: {key} is {mask.dtype}, masks are bool")
        other = masks.get(f"{'second' if branch == 'online' else 'online'}/{name}")
        if other is None or other.shape != mask.shape:
            raise RunDirError(
                f"{path}: {key} has no matching mask of the same shape in the other branch"
            )
        if shapes is not None and name in shapes and tuple(shapes[name]) != tuple(mask.shape):
            raise RunDirError(
                f"{path}: {key} has shape {tuple(mask.shape)}, this run's layer "
                f"{tuple(shapes[name])}"
            )
