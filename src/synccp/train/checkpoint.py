"""Checkpoints: everything needed to resume exactly, written atomically, with one fallback.

`checkpoints/last.pt` is the newest; before it is replaced the previous one is kept as
`checkpoints/prev.pt`, so a checkpoint found corrupt on resume falls back to the one before.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from synccp.results.rundir import CHECKPOINTS, atomic_write

LOG = logging.getLogger(__name__)
LAST = "last.pt"
PREV = "prev.pt"


class CheckpointError(RuntimeError):
    """No usable checkpoint: names each file tried and why it failed."""


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Atomically write `state` as the newest checkpoint, keeping the previous one."""
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / LAST
    atomic_write(folder / f"{LAST}.new", lambda tmp: torch.save(state, tmp))
    if last.exists():
        os.replace(last, folder / PREV)
    os.replace(folder / f"{LAST}.new", last)
    return last


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The newest readable checkpoint of `run_dir` (last.pt, else prev.pt, else a pending one)."""
    folder = Path(run_dir) / CHECKPOINTS
    failures = []
    for name in (LAST, f"{LAST}.new", PREV):
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
            continue
        return state
    detail = "; ".join(failures) if failures else f"no checkpoint in {folder}"
    raise CheckpointError(f"cannot resume {run_dir}: {detail}")
