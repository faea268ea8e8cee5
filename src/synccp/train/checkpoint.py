"""Checkpoints: everything needed to resume exactly, written atomically, with one fallback.

`checkpoints/last.pt` is the newest; before it is replaced the previous one is kept as
`checkpoints/prev.pt`, so a checkpoint found corrupt on resume falls back to the one before.
A write goes to a temporary file (fsynced), is renamed to `last.pt.new`, then `last.pt` becomes
`prev.pt` and `last.pt.new` becomes `last.pt`; a process killed at any point leaves at least one
complete checkpoint that `load_checkpoint` finds. A state holding NaN or Inf is never written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from synccp.results.rundir import CHECKPOINTS, atomic_write, fsync_directory

LOG = logging.getLogger(__name__)
LAST = "last.pt"
PREV = "prev.pt"
PENDING = f"{LAST}.new"


class CheckpointError(RuntimeError):
    """No usable checkpoint: names each file tried and why it failed."""


class NonFiniteStateError(FloatingPointError):
    """A state to checkpoint holds NaN/Inf; names the tensor."""


def _floating_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) for every floating-point tensor inside nested dicts/lists/tuples."""
    if torch.is_tensor(obj):
        if obj.is_floating_point():
            yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _floating_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from _floating_tensors(value, f"{prefix}.{index}" if prefix else str(index))


@torch.no_grad()
def first_nonfinite(state: Any) -> str | None:
    """The name of the first floating-point tensor in `state` holding NaN/Inf, else None.

    One host synchronization per device for the whole state."""
    named = list(_floating_tensors(state))
    by_device: dict[torch.device, list[int]] = {}
    for index, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(index)
    bad = []
    for device, indices in by_device.items():
        flags = torch.stack([~torch.isfinite(named[i][1]).all() for i in indices])  # (T,)
        bad += [indices[i] for i in flags.nonzero().flatten().tolist()]
    return named[min(bad)][0] if bad else None


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` as the newest checkpoint, keeping the previous one.

    Raises `NonFiniteStateError` (writing nothing) when a tensor of `state` holds NaN/Inf."""
    bad = first_nonfinite(state)
    if bad is not None:
        raise NonFiniteStateError(f"checkpoint state {bad} holds NaN/Inf; not written "
                                  f"(the previous checkpoint of {run_dir} is kept)")
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / LAST
    atomic_write(folder / PENDING, lambda tmp: torch.save(state, tmp))
    if last.exists():
        os.replace(last, folder / PREV)
    os.replace(folder / PENDING, last)
    fsync_directory(folder)
    return last


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `run_dir` holds any checkpoint file (readable or not)."""
    folder = Path(run_dir) / CHECKPOINTS
    return any((folder / name).exists() for name in (LAST, PENDING, PREV))


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The newest readable checkpoint of `run_dir`: a pending one (complete, renamed but not yet
    promoted when the writer was killed), else last.pt, else prev.pt."""
    folder = Path(run_dir) / CHECKPOINTS
    failures = []
    for name in (PENDING, LAST, PREV):
        path = folder / name
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
        except Exception as err:  # a torn or corrupt file: try the next one
            failures.append(f"{path}: {type(err).__name__}: {err}")
            LOG.warning("checkpoint %s is unreadable (%s); trying the previous one", path, err)
            continue
        if not isinstance(state, dict) or "step" not in state:
            failures.append(f"{path}: not a synccp checkpoint")
            LOG.warning("checkpoint %s is not a synccp checkpoint; trying the previous one", path)
            continue
        return state
    detail = "; ".join(failures) if failures else f"no checkpoint in {folder}"
    raise CheckpointError(f"cannot resume {run_dir}: {detail}")
