"""`synccp sweep GRID.toml`: run a grid of pretraining runs, skipping finished ones.

The grid file is parsed, expanded and validated by `synccp.grid`; this module decides what each
cell's run directory needs (new, resume, eval, cost, done, conflict), runs the cells `jobs` at a
time in subprocesses (through a launcher such as torchrun when the grid names one) and reports.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tqdm import tqdm

from synccp import rundir, study
from synccp.cell_dirs import adopt_pending_log, clear_unstarted, log_for, run_state
from synccp.grid import Cell, Grid, SweepError, load_grid, plan, validate
from synccp.rundir.lock import RunLockedError

LOG = logging.getLogger(__name__)
Runner = Callable[[list[str], Path, dict[str, str]], int]


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
    reasons: dict[str, str] = field(default_factory=dict)  # why a cell is a `conflict` or `locked`
    locked: dict[str, str] = field(default_factory=dict)  # cells another process writes: not run
    deferred: list[str] = field(default_factory=list)  # would not finish before the deadline
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Every cell finished: none failed, none left to another process."""
        return not self.failed and not self.locked


def cost_available() -> bool:
    """Whether the training-cost model (`synccp.cost.run`) is installed."""
    try:
        return importlib.util.find_spec("synccp.cost.run") is not None
    except ImportError:
        return False


def run_sweep(path: str | Path, *, jobs: int | None = None, dry_run: bool = False,
              overrides: Sequence[str] = (), out: str | Path | None = None,
              runner: Runner | None = None, progress: bool = True,
              commit: bool = False, deadline: float | None = None) -> SweepResult:
    """Validate every cell of the grid file, then run what is not finished, `jobs` at a time.

    A failing cell is recorded in `SweepResult.failed` and the others go on. `runner(argv, log,
    env) -> exit code` replaces the subprocess launcher (tests). With `dry_run` nothing is
    written or launched; `actions` says what would happen to each cell. `overrides` (`key=value`,
    as `--set`) are added to the grid's [fixed]; `out` replaces its [sweep] out. With `commit`,
    each finished cell's small result files are committed to git as it finishes (synccp.study).
    With `deadline` (a `time.monotonic()` value), a cell that has to train starts only if its
    method's expected time per run (`cell_seconds`) ends before it; the others are `deferred`."""
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {jobs}")
    grid = load_grid(path, overrides)
    cells = plan(grid, out=Path(out) if out is not None else None)
    resolved = validate(grid, cells)
    want_cost = grid.cost and cost_available()
    result = SweepResult(grid=grid, cells=cells, actions={}, dry_run=dry_run)
    if grid.cost and not want_cost:
        result.warnings.append("the cost model (synccp.cost) is not installed: no cost.json is "
                               "written")
        LOG.warning(result.warnings[-1])
    for cell in cells:
        action, reason = run_state(cell.run_dir, resolved[cell.name], want_cost=want_cost)
        result.actions[cell.name] = action
        if reason:
            result.reasons[cell.name] = reason
    if dry_run:
        return result
    check_test_splits(resolved, result.actions)
    execute(result, jobs=jobs or grid.jobs, want_cost=want_cost, runner=runner, progress=progress,
            python=sys.executable, commit=commit, deadline=deadline)
    return result


def check_test_splits(resolved: dict[str, dict], actions: dict[str, str]) -> None:
    """Load each distinct evaluation split once before any cell trains: the cells pretrain with
    `--no-eval`, so a broken test file would otherwise surface only after their training."""
    from synccp.data import load_dataset
    from synccp.data.stream import STREAMED

    seen: set[tuple] = set()
    for name, config in resolved.items():
        data = config["data"]
        key = (data["name"], data["root"], data["image_size"])
        if actions.get(name) not in ("new", "restart", "resume") or key in seen:
            continue
        seen.add(key)
        if data["name"] in STREAMED or data.get("stream"):
            continue  # streamed datasets are not probed by `synccp eval`
        try:
            load_dataset(data["name"], "test", root=data["root"] or None,
                         image_size=data["image_size"] or None)
        except (ValueError, OSError) as err:
            raise SweepError(f"cell {name}: the evaluation split cannot be read, nothing was "
                             f"run: {err}") from None


def _executable(argv: list[str], env: dict[str, str]) -> list[str]:
    """`argv` with a bare launcher name (e.g. `torchrun`) that is not on PATH taken from this
    interpreter's environment (`.venv/bin/torchrun` when synccp runs from a venv not activated)."""
    if os.sep in argv[0] or shutil.which(argv[0], path=env.get("PATH")):
        return argv
    sibling = Path(sys.executable).parent / argv[0]
    return [str(sibling), *argv[1:]] if sibling.is_file() else argv


_CHILD_CPU = threading.local()  # .seconds: CPU time of the processes this thread's runner ran


def subprocess_runner(argv: list[str], log: Path, env: dict[str, str]) -> int:
    """Run `argv` with stdout and stderr appended to `log`; return its exit code. Its CPU time
    (user + system, all its threads and waited-for children) is added to this thread's
    `_CHILD_CPU.seconds`: the evidence of whether the run had its cores to itself."""
    argv = _executable(argv, env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        handle.write(f"$ {shlex.join(argv)}\n")
        handle.flush()
        with subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env) as child:
            try:
                _, status, usage = os.wait4(child.pid, 0)
            except BaseException:
                child.kill()
                raise
            child.returncode = os.waitstatus_to_exitcode(status)
    _CHILD_CPU.seconds = getattr(_CHILD_CPU, "seconds", 0.0) + usage.ru_utime + usage.ru_stime
    return child.returncode


def _steps(cell: Cell, action: str, grid: Grid, *, want_cost: bool,
           python: str) -> list[tuple[str, list[str]]]:
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


def _commit(result: SweepResult, cell: Cell) -> None:
    warning = study.commit_run(cell.run_dir,
                               message=study.commit_message(result.grid.name, cell.name,
                                                                          cell.run_dir))
    if warning:
        result.warnings.append(warning)
        LOG.warning(warning)


def _run_cell(cell: Cell, action: str, grid: Grid, *, want_cost: bool, runner: Runner,
              env: dict[str, str], python: str,
              jobs: int = 1) -> tuple[str | None, list[str], float]:
    """Run a cell's remaining steps; return (failure reason or None, warnings, wall seconds).
    The time they took goes into the run's sweep.json (synccp.study)."""
    _CHILD_CPU.seconds = 0.0
    started = time.monotonic()
    reason, warnings = _run_cell_steps(cell, action, grid, want_cost=want_cost, runner=runner,
                                       env=env, python=python)
    wall_s = time.monotonic() - started
    if reason is None and (cell.run_dir / rundir.CONFIG).is_file():
        threads = int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        study.write_sweep_record(cell.run_dir, cell=cell.name, wall_s=wall_s, jobs=jobs,
                                 cpu_s=_CHILD_CPU.seconds or None, threads=threads,
                                 trained=action in TRAINS)
    return reason, warnings, wall_s


def _run_cell_steps(cell: Cell, action: str, grid: Grid, *, want_cost: bool, runner: Runner,
                    env: dict[str, str], python: str) -> tuple[str | None, list[str]]:
    warnings = []
    try:
        if action == "restart":
            clear_unstarted(cell)
        for label, argv in _steps(cell, action, grid, want_cost=want_cost, python=python):
            code = runner(argv, log_for(cell), env)
            adopt_pending_log(cell)
            if code == 0:
                continue
            if label != "cost":
                return f"{label} exited with code {code}; see {log_for(cell)}", warnings
            warnings.append(f"{cell.name}: cost exited with code {code}; see {log_for(cell)}")
    except RunLockedError as err:
        return f"locked: {err}", warnings
    except (OSError, rundir.RunDirError) as err:
        return f"{type(err).__name__}: {err}", warnings
    return None, warnings


def _child_env(jobs: int) -> dict[str, str]:
    """Unbuffered output; with several jobs, split the CPU threads between them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if jobs > 1 and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    return env


def _eta(elapsed_s: float, walls: list[float], left: int, jobs: int) -> str:
    """"12 min so far, about 30 min left": the cells left run `jobs` at a time, each taking the
    mean wall time of the cells that trained so far (`walls`; failed cells left out). Not elapsed /
    finished, which reads a first round of `jobs` cells ending together as `jobs` times slower
    than it was."""
    later = ""
    if left and walls:
        left_s = sum(walls) / len(walls) * math.ceil(left / jobs)
        later = f", about {left_s / 60:.0f} min left"
    return f"{elapsed_s / 60:.0f} min so far" + later


def _tally(result: SweepResult) -> str:
    """"68 of 108 cells done, 1 failed, 2 in use elsewhere, 39 not started": the cells finished
    (before this sweep and by it) out of all, then those that failed, that another process holds
    (locked: not run) or that the deadline left. Not the cells handled so far: deferred cells are
    handled at once, and a count of them read "108 of 108" while 39 had not run."""
    done = len(result.skipped) + len(result.completed)
    parts = [f"{done} of {len(result.cells)} cells done"]
    parts += [f"{n} {what}" for n, what in ((len(result.failed), "failed"),
                                           (len(result.locked), "in use elsewhere"),
                                           (len(result.deferred), "not started"))
              if n]
    return ", ".join(parts)


def _postfix(bar: tqdm, result: SweepResult) -> None:
    bar.set_postfix(done=len(result.completed), skipped=len(result.skipped),
                    failed=len(result.failed))


def _settle(result: SweepResult) -> list[Cell]:
    """Record the cells that run nothing (done, conflict, locked); return those left to run."""
    for cell in result.cells:
        action = result.actions[cell.name]
        if action == "done":
            result.skipped.append(cell.name)
        elif action == "conflict":
            result.failed[cell.name] = result.reasons[cell.name]
        elif action == "locked":
            result.locked[cell.name] = result.reasons[cell.name]
            LOG.warning("sweep cell %s is %s: not run", cell.name, result.reasons[cell.name])
    return [c for c in result.cells if result.actions[c.name] not in ("done", "conflict", "locked")]


DEFERRED = "deferred"
TRAINS = ("new", "restart", "resume")


def _start_before(deadline: float | None, seconds: Callable[[], float | None],
                  run: Callable[[], tuple]):
    """`run()` if a cell expected to take `seconds()` (asked when its turn comes) ends before
    `deadline`, or either is unknown; else (DEFERRED, [], 0.0) without running it."""
    expected = seconds() if deadline is not None else None
    if expected is not None and time.monotonic() + expected > deadline:
        return DEFERRED, [], 0.0
    return run()


class Expected:
    """Expected wall seconds of a training cell: the median of its method's cells trained from
    scratch in this sweep once one has finished (this machine, now), else `cell_seconds`'s
    figure from the study's earlier runs."""

    def __init__(self, result: SweepResult):
        self.result, self.figures = result, cell_seconds(result)
        self.measured: dict[str, list[float]] = {}

    def record(self, cell: Cell, wall_s: float) -> None:
        if self.result.actions[cell.name] in ("new", "restart"):
            self.measured.setdefault(_method(cell), []).append(wall_s)

    def __call__(self, cell: Cell) -> float | None:
        if cell.name not in self.figures:
            return None  # evaluation only
        here = self.measured.get(_method(cell))
        return statistics.median(here) if here else self.figures[cell.name]


def execute(result: SweepResult, *, jobs: int, want_cost: bool, runner: Runner | None,
            progress: bool, python: str, commit: bool = False,
            deadline: float | None = None) -> None:
    """Run the planned actions `jobs` cells at a time, filling `result`; a progress bar over it.
    With `deadline`, each training cell is checked when its turn comes (`_start_before`)."""
    todo = _settle(result)
    expected = Expected(result) if deadline is not None else None
    bar = tqdm(total=len(result.cells), initial=len(result.cells) - len(todo), unit="run",
               desc=f"sweep {result.grid.name}", disable=not progress or None, dynamic_ncols=True)
    _postfix(bar, result)
    env = _child_env(jobs)
    started, ran = time.monotonic(), 0
    walls: list[float] = []  # of the cells that finished
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(_start_before, deadline, partial(expected, cell) if expected
                               else lambda: None,
                               partial(_run_cell, cell, result.actions[cell.name], result.grid,
                                       want_cost=want_cost, runner=runner or subprocess_runner,
                                       env=env, python=python, jobs=jobs)): cell
                   for cell in todo}
        for future in as_completed(futures):
            cell = futures[future]
            reason, warnings, wall_s = future.result()
            result.warnings += warnings
            ran += 1
            if reason == DEFERRED:
                result.deferred.append(cell.name)
            elif reason is None:
                if result.actions[cell.name] in TRAINS:  # an eval or cost step is not a run's time
                    walls.append(wall_s)
                if expected:
                    expected.record(cell, wall_s)
                result.completed.append(cell.name)
                if commit:
                    _commit(result, cell)
            else:
                result.failed[cell.name] = reason
                LOG.error("sweep cell %s failed: %s", cell.name, reason)
            bar.update(1)
            _postfix(bar, result)
            if bar.disable:  # no terminal (a log file, nohup): one line per cell instead of the bar
                LOG.info("sweep %s: %s %s (%s; %s)", result.grid.name, cell.name,
                         {None: "done", DEFERRED: "not started (deadline)"}.get(reason, "FAILED"),
                         _tally(result),
                         _eta(time.monotonic() - started, walls, len(todo) - ran, jobs))
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
    actions = list(result.actions.values())
    counts = {a: actions.count(a) for a in dict.fromkeys(actions)}
    lines.append("  " + ", ".join(f"{n} {a}" for a, n in counts.items()))
    return "\n".join(lines)


def _method_groups(result: SweepResult) -> list[study.GroupTimes]:
    """Per method: the cells left, and the wall times of its finished runs (synccp.study)."""
    by_method: dict[str, list[Cell]] = {}
    for cell in result.cells:
        by_method.setdefault(_method(cell), []).append(cell)
    groups = []
    for method, cells in by_method.items():
        done = [c.run_dir for c in cells if result.actions[c.name] == "done"]
        quiet, loaded, here = study.wall_times(done, study.timing_machine())
        groups.append(study.GroupTimes(method, left=len(cells) - len(done), quiet=quiet,
                                       loaded=loaded, here=here))
    return groups


def _method(cell: Cell) -> str:
    return cell.resolved["method"]["name"]


def cell_seconds(result: SweepResult) -> dict[str, float | None]:
    """Expected wall seconds of each cell that has to train: its method's figure per run, as
    `format_remaining` prints it (None without one). Cells that only evaluate are not listed."""
    figures = study.per_run_minutes(_method_groups(result), result.grid.minutes_per_run)
    return {cell.name: None if figures[_method(cell)] is None else figures[_method(cell)][0] * 60
            for cell in result.cells if result.actions[cell.name] in TRAINS}


def format_remaining(result: SweepResult, jobs: int | None = None) -> str:
    """How many cells are left to run and about how long they take, per method (synccp.study)."""
    groups = _method_groups(result)
    return f"sweep {result.grid.name}: " + study.remaining_text(
        groups, total=len(result.cells), jobs=jobs or result.grid.jobs,
        minutes_per_run=result.grid.minutes_per_run)


def format_summary(result: SweepResult) -> str:
    """Counts of completed / skipped / failed cells and the reason of each failure."""
    lines = [f"sweep {result.grid.name}: {len(result.completed)} completed, {len(result.skipped)} "
             f"skipped (already finished), {len(result.failed)} failed"
             + (f", {len(result.locked)} in use by another process (not run; run the sweep again "
                f"once they end)" if result.locked else "")
             + (f", {len(result.deferred)} not started (expected to end after the deadline; run "
                f"the sweep again to go on)" if result.deferred else "")]
    lines += [f"  FAILED {name}: {reason}" for name, reason in result.failed.items()]
    lines += [f"  LOCKED {name}: {reason}" for name, reason in result.locked.items()]
    lines += [f"  warning: {text}" for text in result.warnings]
    return "\n".join(lines)
