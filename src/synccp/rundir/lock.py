"""One writer per run directory: an OS-level lock (`flock`) on `<run dir>/.lock`.

The lock is held by the process that writes the run (rank 0 under torchrun) from before its
first write to its exit; the kernel releases it on any exit, SIGKILL included, so a lock can
never outlive its holder. The file names the holder (pid, host, start time, command) while it
is held and is emptied on release: a non-empty file that nobody locks is the trace of a killed
holder (a stale lock), taken over with a log line. A second writer fails at once with
`RunLockedError` naming the holder, having written nothing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from synccp.rundir.files import RunDirError

LOG = logging.getLogger(__name__)
LOCK = ".lock"
RETRY_S = 1.0  # a probe (`holder`) holds the lock for microseconds: retry that long first


class RunLockedError(RunDirError):
    """Another process holds the run directory's lock; the message names it."""


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return (
            f"pid {info['pid']} on host {info['host']}, since {info['since']} ({info['command']})"
        )
    except (ValueError, KeyError, TypeError):
        return "a process that wrote no holder information"


def _flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class RunLock:
    """`with RunLock(run_dir):` — hold `run_dir`'s lock (creating the directory if needed)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir() or self.path.is_symlink():
            raise RunDirError(
                f"{self.path} must be a plain file (the run directory's lock); remove it"
            )
        deadline = time.monotonic() + RETRY_S
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if _flock(fd, fcntl.LOCK_EX) and self._still_ours(fd):
                    break
            except OSError as err:  # e.g. ENOLCK / EOPNOTSUPP: a file system without locks
                os.close(fd)
                raise RunDirError(
                    f"{self.path}: cannot lock the run directory ({err.strerror}); its "
                    f"file system may not support locks: choose an --out on a local disk"
                ) from err
            os.close(fd)
            if time.monotonic() > deadline:
                raise _in_use(self.path.parent, holder(self.path.parent) or "another process")
            time.sleep(0.05)
        stale = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if stale:
            LOG.warning(
                "%s: took over a stale lock of %s, which ended without releasing it (killed?)",
                self.path.parent,
                _describe(stale),
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self.fd = fd

    def _still_ours(self, fd: int) -> bool:
        """The locked file is still the one at `path` (not removed and recreated meanwhile)."""
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)  # empty: released cleanly (a killed holder leaves its line)
        except OSError:
            pass
        os.close(self.fd)  # closing the only descriptor releases the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(run_dir: str | Path) -> str | None:
    """Who holds `run_dir`'s lock (pid, host, since, command), or None when nobody does."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        if _flock(fd, fcntl.LOCK_SH):
            return None  # free (closing the descriptor drops the probe's shared lock)
        return _describe(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
    finally:
        os.close(fd)


def raise_if_locked(run_dir: str | Path) -> None:
    """`RunLockedError` when another process holds `run_dir` (checked before any work starts)."""
    who = holder(run_dir)
    if who is not None:
        raise _in_use(Path(run_dir), who)


def _in_use(run_dir: Path, who: str) -> RunLockedError:
    return RunLockedError(
        f"{run_dir} is in use by {who}; one process writes a run directory at a "
        f"time: wait for it to end (or stop it), then run this again"
    )
