"""Checkpoints: everything needed to resume exactly, written atomically, with one fallback.

`checkpoints/last.pt` is the newest; before it is replaced the previous one is kept as
`checkpoints/prev.pt`, so a checkpoint found corrupt on resume falls back to the one before.
A write goes to a temporary file (fsynced), is renamed to `last.pt.new`, then `last.pt` becomes
`prev.pt` and `last.pt.new` becomes `last.pt`; a process killed at any point leaves at least one
complete checkpoint that `load_checkpoint` finds. A state holding NaN or Inf is never written.

A checkpoint proves it is intact and belongs to its run: the file holds
`{"synccp_checkpoint": 2, "identity": ..., "checksum": ..., "state": ...}`, the checksum being
SHA-256 over the whole state in a canonical order (every tensor's dtype, shape and bytes, every
key and value) and the identity that of the run (`rundir.run_identity`: its config.json). Files
are read with `torch.load(weights_only=True)`: tensors, containers and primitives only, so a
file whose pickle would call a function (`os.system`, ...) is refused, never run. A file that
fails any check is skipped with a warning naming it, for the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from synccp.rundir.atomic import atomic_write, fsync_directory
from synccp.rundir.layout import CHECKPOINTS

LOG = logging.getLogger(__name__)
LAST = "last.pt"
PREV = "prev.pt"
PENDING = f"{LAST}.new"
FORMAT = 2  # 1: the bare state, no checksum or identity (refused: it cannot prove it is intact)


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
    for indices in by_device.values():
        flags = torch.stack([~torch.isfinite(named[i][1]).all() for i in indices])  # (T,)
        bad += [indices[i] for i in flags.nonzero().flatten().tolist()]
    return named[min(bad)][0] if bad else None


def _feed(digest: Any, obj: Any) -> None:
    """Feed `obj` to `digest` in a canonical, type-tagged order (dict keys sorted)."""
    if torch.is_tensor(obj):
        tensor = obj.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{tensor.dtype}{tuple(obj.shape)}:".encode())
        digest.update(tensor.view(torch.uint8).numpy())  # (bytes,) no copy
    elif isinstance(obj, Mapping):
        digest.update(f"D{len(obj)}:".encode())
        for key in sorted(obj, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key)
            _feed(digest, obj[key])
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}:".encode())
        for item in obj:
            _feed(digest, item)
    elif obj is None or isinstance(obj, (bool, int, str, bytes, torch.dtype, torch.device)):
        digest.update(f"{type(obj).__name__}:{obj!r};".encode())
    elif isinstance(obj, float):
        digest.update(f"float:{obj.hex()};".encode())
    else:
        raise TypeError(
            f"a checkpoint holds tensors, containers and primitives only, got {type(obj).__name__}"
        )


def content_checksum(state: Any) -> str:
    """SHA-256 (hex) of `state`: tensors by dtype, shape and bytes; containers in fixed order."""
    digest = hashlib.sha256()
    _feed(digest, state)
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, state: dict[str, Any], *, identity: str | None = None) -> Path:
    """Atomically write `state` (with its checksum and the run's `identity`) as the newest
    checkpoint, keeping the previous one.

    Raises `NonFiniteStateError` (writing nothing) when a tensor of `state` holds NaN/Inf."""
    bad = first_nonfinite(state)
    if bad is not None:
        raise NonFiniteStateError(
            f"checkpoint state {bad} holds NaN/Inf; not written "
            f"(the previous checkpoint of {run_dir} is kept)"
        )
    payload = {
        "synccp_checkpoint": FORMAT,
        "identity": identity,
        "checksum": content_checksum(state),
        "state": state,
    }
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    last = folder / LAST
    atomic_write(folder / PENDING, lambda tmp: torch.save(payload, tmp))
    if last.exists():
        os.replace(last, folder / PREV)
    os.replace(folder / PENDING, last)
    fsync_directory(folder)
    return last


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `run_dir` holds any checkpoint file (readable or not)."""
    folder = Path(run_dir) / CHECKPOINTS
    return any((folder / name).exists() for name in (LAST, PENDING, PREV))


def first_line(err: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), for one-line reports."""
    return (str(err).splitlines() or [""])[0][:300]


def _load_failure(err: Exception) -> str:
    """Why `torch.load(weights_only=True)` failed, without torch's advice to retry unsafely."""
    text = str(err)
    if text.startswith(
        "Weights only load failed"
    ):  # the file asks for a global (code) or an opcode
        reasons = [
            part.strip().removeprefix("WeightsUnpickler error:").strip()
            for part in text.split("\n\n")
        ]
        reasons = [r for r in reasons[1:] if r and not r.startswith("Check the documentation")]
        return "refusing to unpickle: " + (
            reasons[0].splitlines()[0][:200] if reasons else "unsupported content"
        )
    return f"{type(err).__name__}: {first_line(err)}"


class _Refused(Exception):
    """A checkpoint file that cannot be used; the message says why."""


def _verified_state(
    path: Path,
    *,
    identity: str | None,
    required: Mapping[str, type],
    map_location: str | torch.device,
) -> dict[str, Any]:
    """The state inside checkpoint `path` once it passed every check, else `_Refused`."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torn, corrupt, or a pickle asking for a global (code): refused
        raise _Refused(f"unreadable or unsafe ({_load_failure(err)})") from None
    if not isinstance(payload, dict) or "synccp_checkpoint" not in payload:
        raise _Refused(
            "not a synccp checkpoint with a checksum (written by an older synccp, or not by synccp)"
        )
    if payload.get("synccp_checkpoint") != FORMAT or not isinstance(payload.get("state"), dict):
        raise _Refused(
            f"checkpoint format {payload.get('synccp_checkpoint')!r}, this synccp reads {FORMAT}"
        )
    if identity is not None and payload.get("identity") != identity:
        raise _Refused("belongs to another run (its identity is not this run's config.json)")
    state = payload["state"]
    try:
        intact = content_checksum(state) == payload.get("checksum")
    except TypeError:
        intact = False
    if not intact:
        raise _Refused("its content does not match its checksum (damaged or edited)")
    for key, kind in {"step": int, **required}.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise _Refused(f"its state lacks {key!r} (or it is not a {kind.__name__})")
    if state["step"] < 0:
        raise _Refused(f"its step is {state['step']}")
    return state


def find_checkpoint(
    run_dir: Path,
    *,
    identity: str | None = None,
    required: Mapping[str, type] = {},
    map_location: str | torch.device = "cpu",
) -> tuple[Path, dict[str, Any]]:
    """(file, state) of the newest usable checkpoint of `run_dir`: a pending one (complete, renamed
    but not yet promoted when the writer was killed), else last.pt, else prev.pt. Usable: loads
    with `weights_only=True`, matches its checksum, belongs to run `identity` (when given) and
    holds `step` and the `required` keys. `CheckpointError` naming every file tried otherwise."""
    folder = Path(run_dir) / CHECKPOINTS
    failures = []
    for name in (PENDING, LAST, PREV):
        path = folder / name
        if not path.exists():
            continue
        if (
            not path.is_file()
        ):  # every later checkpoint write would fail on it: stop before training
            raise CheckpointError(f"cannot resume {run_dir}: {path} is not a file; move it away")
        try:
            return path, _verified_state(
                path, identity=identity, required=required, map_location=map_location
            )
        except _Refused as err:
            failures.append(f"{path}: {err}")
            LOG.warning("checkpoint %s is refused: %s; trying the previous one", path, err)
    detail = "; ".join(failures) if failures else f"no checkpoint in {folder}"
    raise CheckpointError(f"cannot resume {run_dir}: {detail}")


def load_checkpoint(
    run_dir: Path,
    map_location: str | torch.device = "cpu",
    *,
    identity: str | None = None,
    required: Mapping[str, type] = {},
) -> dict[str, Any]:
    """The state of the newest usable checkpoint of `run_dir` (see `find_checkpoint`)."""
    return find_checkpoint(
        run_dir, identity=identity, required=required, map_location=map_location
    )[1]
