"""Atomic file writes of the run directory (and of the data caches).

Every file is written to a temporary sibling and renamed over the target (`os.replace` is atomic
on POSIX), so a crash or a kill leaves either the old or the new file, never a torn one — plus,
at worst, a stray temporary `.<name>.<random>.tmp`, which the next run of the directory removes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TEMPORARY = re.compile(r"^\..+\.[^.]+\.tmp$")  # atomic_write's mkstemp names: .<name>.<random>.tmp


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary file next to `path`, fsync it, rename it over `path`."""
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
    except (
        OSError,
        RuntimeError,
    ) as err:  # a full disk: torch.save raises RuntimeError, safetensors its own
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
    return OSError(
        getattr(err, "errno", None) or errno.EIO,
        f"cannot write {path}: {reason} (the previous file, if any, is intact{free})",
    )


def fsync_directory(path: str | Path) -> None:
    """Make renames inside `path` durable (power loss); no-op where directories cannot be opened."""
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
