"""A sweep cell's run directory: what it needs next, where its log goes, and how a run stopped
before its first checkpoint is cleared to start again. Its format is `synccp.rundir`'s."""

from __future__ import annotations

import shutil
from pathlib import Path

from synccp import rundir
from synccp.grid import Cell
from synccp.rundir.lock import RunLock, holder


def run_state(
    run_dir: Path, expected: dict | None = None, *, want_cost: bool = False
) -> tuple[str, str]:
    """What a cell's directory needs: `new`, `restart` (started, never checkpointed), `resume`,
    `eval`, `cost`, `done`, `locked` (another process writes it now; its holder is returned) or
    `conflict` (holds something else; the reason is returned too)."""
    run_dir = Path(run_dir)
    who = holder(run_dir) if run_dir.is_dir() else None
    if who is not None:
        return "locked", f"in use by {who}"
    if not (run_dir / rundir.CONFIG).is_file():
        if run_dir.is_dir() and rundir.foreign_entries(run_dir):
            return "conflict", f"{run_dir} holds files but no {rundir.CONFIG}"
        return "new", ""
    if expected is not None:
        try:
            changed = rundir.config_differences(rundir.read_json(run_dir / rundir.CONFIG), expected)
        except rundir.RunDirError as err:
            return "conflict", str(err)
        if changed:
            return "conflict", f"{run_dir} holds a different run (differs in {', '.join(changed)})"
    if not rundir.is_finished(run_dir):
        return ("resume", "") if rundir.has_checkpoint(run_dir) else ("restart", "")
    if not (run_dir / rundir.EVAL).is_file():
        return "eval", ""
    if want_cost and not (run_dir / rundir.COST).is_file():
        return "cost", ""
    return "done", ""


def pending_log(cell: Cell) -> Path:
    """Where a run's log goes until its directory exists (pretrain refuses a non-empty new dir)."""
    return cell.run_dir.parent / ".logs" / f"{cell.name}.txt"


def log_for(cell: Cell) -> Path:
    return (
        cell.run_dir / "log.txt" if (cell.run_dir / rundir.CONFIG).is_file() else pending_log(cell)
    )


def adopt_pending_log(cell: Cell) -> None:
    """Append the pending log to `<run_dir>/log.txt` once the run directory exists."""
    pending = pending_log(cell)
    if pending.is_file() and (cell.run_dir / rundir.CONFIG).is_file():
        with open(cell.run_dir / "log.txt", "a") as handle:
            handle.write(pending.read_text())
        pending.unlink()


def clear_unstarted(cell: Cell) -> None:
    """Empty a run that was stopped before its first checkpoint, so it can start again; under the
    run directory's lock (a process that started it meanwhile is left alone), which stays."""
    ours = {rundir.CONFIG, rundir.METRICS, rundir.CHECKPOINTS, "log.txt"}
    with RunLock(cell.run_dir):
        entries = rundir.foreign_entries(cell.run_dir)
        strangers = [p.name for p in entries if p.name not in ours and not p.name.startswith(".")]
        if strangers:
            raise rundir.RunDirError(
                f"cannot restart {cell.run_dir}: it also holds {sorted(strangers)}"
            )
        log = cell.run_dir / "log.txt"
        if log.is_file():
            pending_log(cell).parent.mkdir(parents=True, exist_ok=True)
            with open(pending_log(cell), "a") as handle:
                handle.write(log.read_text())
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
