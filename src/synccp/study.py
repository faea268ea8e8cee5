"""A study that survives interruption: each finished run's small result files go into git as it
finishes (`synccp sweep --commit`), so a fresh clone regenerates the report from what is committed
and the sweep resumes there, running only what is missing.

Committed per run: config.json, summary.json, eval.json, cost.json, metrics.jsonl, sweep.json
(how long the run took, on which CPU, with how many threads, from which commit) and, for runs
trained by tools/learning_curve.py, curve.jsonl. Never checkpoints,
models or masks: `studies/.gitignore` keeps them out, and a finished run is "done" without them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from synccp import rundir

LOG = logging.getLogger(__name__)
# a grid's `minutes_per_run`: one figure for any method, or figures by method name
MinutesPerRun = float | dict[str, float] | None
SWEEP_RECORD = "sweep.json"
CURVE = "curve.jsonl"  # tools/learning_curve.py: kNN at every epoch end (the protocol runs)
SMALL = (
    rundir.CONFIG,
    rundir.SUMMARY,
    rundir.EVAL,
    rundir.COST,
    rundir.METRICS,
    SWEEP_RECORD,
    CURVE,
)
_GIT = threading.Lock()  # sweep jobs finish in threads: one git command at a time


def cpu_model() -> str:
    """The CPU's model name (every timing names it), e.g. "AMD EPYC"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_capability() -> str:
    """The SIMD level torch's CPU kernels use here (e.g. "AVX2", "AVX512"). Two machines with the
    same model name can differ in it, and then their runs differ in the low-order bits from the
    first optimizer step on: a run is exact per CPU capability and thread count, not across."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def cpu_id() -> str:
    """The CPU's family and model numbers, e.g. "family 25 model 17" ("" where /proc/cpuinfo
    has none): one model name and SIMD level covered machines 1.6× apart in training speed, so
    timings also record these (numerics follow `machine_name`: the two gave identical runs)."""
    try:
        return cpu_id_of(Path("/proc/cpuinfo").read_text())
    except OSError:
        return ""


def cpu_id_of(cpuinfo: str) -> str:
    """`cpu_id` from the text of /proc/cpuinfo (its first processor)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "cpu family" not in fields or "model" not in fields:
        return ""
    return f"family {fields['cpu family']} model {fields['model']}"


def timing_machine() -> str:
    """`machine_name` and `cpu_id`: the machine a wall time is matched on (`wall_times`)."""
    return f"{machine_name()} {cpu_id()}".strip()


def _record_timing(record: dict) -> str:
    """A sweep record's machine as `timing_machine` writes it (records before `cpu_id` lack it)."""
    return f"{_record_machine(record)} {record.get('cpu_id', '')}".strip()


def machine_name() -> str:
    """The CPU as every speed figure names it: model and SIMD level, e.g. "AMD EPYC (AVX512)"."""
    return _machine_label(cpu_model(), cpu_capability())


def _machine_label(cpu: str | None, capability: str | None) -> str:
    return f"{cpu or 'unknown CPU'} ({capability or 'SIMD level not recorded'})"


def _record_machine(record: dict) -> str:
    """A sweep record's machine as `machine_name` writes it; "(SIMD level not recorded)" for
    records older than the field."""
    return _machine_label(record.get("cpu"), record.get("cpu_capability"))


def recorded_machine(run_dir: Path) -> str | None:
    """The machine a sweep's `sweep.json` says ran `run_dir` (`_record_machine`); None with no
    readable record (a run outside a sweep)."""
    path = Path(run_dir) / SWEEP_RECORD
    if not path.is_file():
        return None
    try:
        return _record_machine(json.loads(path.read_text()))
    except (ValueError, AttributeError):
        return None


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def source_commit() -> str:
    """The git commit of the synccp source that ran ("unknown" outside a checkout)."""
    done = _git(["rev-parse", "--short=12", "HEAD"], Path(__file__).resolve().parent)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def write_sweep_record(run_dir: Path, *, cell: str, wall_s: float, jobs: int,
                       cpu_s: float | None = None, threads: int = 1, trained: bool = True) -> None:
    """`sweep.json`: the evidence behind the run's timing (wall time of all its steps, summed over
    the sweeps that worked on it, and the machine of the last one). With `cpu_s` (the CPU time
    its processes used; summed like the wall time, dropped if an earlier sweep did not measure
    it), `cpu_share` = cpu_s / (wall_s × threads): about 1 when the run had its `threads` cores
    to itself, lower when other work took them (`is_loaded`); a launcher's several processes
    add up (above 1). A first record of a sweep that did not train the run (it only evaluated
    or costed a run trained elsewhere, e.g. by tools/learning_curve.py) is marked `"timing":
    "untimed"`: its seconds are not a run's, and `wall_times` leaves it out. A `timing` mark
    of an earlier record is kept."""
    path = Path(run_dir) / SWEEP_RECORD
    before: dict = {"wall_s": 0.0, "cpu_s": 0.0}
    timing = None if trained else UNTIMED
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            before = {"wall_s": float(old["wall_s"]), "cpu_s": old.get("cpu_s")}
            timing = old.get("timing")
        except (ValueError, KeyError, TypeError):
            LOG.warning("replacing %s: not a sweep record", path)
    wall_s = before["wall_s"] + wall_s
    if cpu_s is not None and isinstance(before["cpu_s"], (int, float)):
        cpu_s = before["cpu_s"] + cpu_s
    else:
        cpu_s = None
    measured = {} if cpu_s is None else {
        "cpu_s": round(cpu_s, 1), "cpu_share": round(cpu_s / max(wall_s, 1e-9) / threads, 3)}
    rundir.write_json(
        path,
        {
            "cell": cell,
            "wall_s": round(wall_s, 1),
            **measured,
            **({} if timing is None else {"timing": timing}),
            "jobs": jobs,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "cpu": cpu_model(),
            "cpu_capability": cpu_capability(),
            "cpu_id": cpu_id(),
            "cores": os.cpu_count(),
            "synccp_commit": source_commit(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


UNTIMED = "untimed"  # a sweep record whose run trained outside any sweep: no run's wall time
LOADED_SHARE = 0.9  # a run whose processes got less of their cores than this shared the machine


def is_loaded(record: dict) -> bool:
    """True when a sweep record's wall time is not a quiet run's: marked `"timing": "loaded"` by
    hand, or measured with a `cpu_share` below LOADED_SHARE. Two MoCo-v2 runs on the study's
    2-core machine (one thread each) had 0.963 after 35 minutes with a few minutes of tests and
    profiling beside them; a third busy process on two cores leaves each of two runs 2/3."""
    share = record.get("cpu_share")
    return record.get("timing") == "loaded" or (
        isinstance(share, (int, float)) and share < LOADED_SHARE)


def commit_run(run_dir: Path, *, message: str) -> str | None:
    """`git add` + `git commit` of the run's small result files (only those paths); returns a
    warning (nothing committed) or None. Never fatal: the run itself is finished either way."""
    run_dir = Path(run_dir).resolve()
    files = [str(run_dir / name) for name in SMALL if (run_dir / name).is_file()]
    with _GIT:
        top = _git(["rev-parse", "--show-toplevel"], run_dir)
        if top.returncode != 0:
            return f"{run_dir} is not inside a git work tree: its results were not committed"
        if _git(["check-ignore", "-q", files[0]], run_dir).returncode == 0:
            return f"{run_dir} is ignored by git (see .gitignore): its results were not committed"
        for args in (["add", "--", *files], ["commit", "-q", "-m", message, "--", *files]):
            done = _git(args, run_dir)
            if done.returncode != 0:
                detail = (done.stderr or done.stdout).strip().splitlines()
                why = detail[-1] if detail else f"exit code {done.returncode}"
                return f"git {args[0]} failed for {run_dir}: {why}"
    return None


def commit_message(study: str, cell: str, run_dir: Path) -> str:
    """ "study cpu_protocol: simclr-dense-s0 done (kNN 83.1, linear 85.2)"."""
    scores = ""
    path = Path(run_dir) / rundir.EVAL
    if path.is_file():
        encoder = json.loads(path.read_text()).get("encoder") or {}
        parts = [
            f"{label} {encoder[key]:.2f}"
            for key, label in (("knn_top1", "kNN"), ("linear_top1", "linear"))
            if isinstance(encoder.get(key), (int, float))
        ]
        scores = f" ({', '.join(parts)})" if parts else ""
    return f"study {study}: {cell} done{scores}"


def wall_times(run_dirs: Iterable[Path], machine: str | None = None
               ) -> tuple[list[float], list[float], bool]:
    """Wall seconds of the finished runs among `run_dirs` that recorded one (sweep.json; not
    the "untimed" records of runs trained outside a sweep): (quiet,
    loaded, here), a record that `is_loaded` (the run shared the machine with other work) in
    the second list. With `machine` (`timing_machine()`) and at least one finished run
    recorded on it, only that machine's runs count and `here` is True: machines with one model
    name differ severalfold in speed."""
    records: list[tuple[dict, str | None]] = []
    for run_dir in run_dirs:
        path = Path(run_dir) / SWEEP_RECORD
        if path.is_file() and (Path(run_dir) / rundir.EVAL).is_file():
            try:
                record = json.loads(path.read_text())
                float(record["wall_s"])
            except (ValueError, KeyError, TypeError):
                LOG.warning("ignoring %s: not a sweep record", path)
                continue
            if record.get("timing") != UNTIMED:
                records.append((record, _record_timing(record)))
    here = machine is not None and any(m == machine for _, m in records)
    kept = [r for r, m in records if not here or m == machine]
    quiet = [float(r["wall_s"]) for r in kept if not is_loaded(r)]
    loaded = [float(r["wall_s"]) for r in kept if is_loaded(r)]
    return quiet, loaded, here


@dataclass(frozen=True)
class GroupTimes:
    """The runs of one kind (a method) in a study: how many are left, and the wall seconds of its
    finished runs, quiet and loaded apart (`wall_times`)."""

    name: str
    left: int
    quiet: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    here: bool = False  # the times are this machine's (`wall_times`)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _per_run(group: GroupTimes, everyone: list[float],
             minutes_per_run: MinutesPerRun) -> tuple[float, str] | None:
    """(minutes per run, where the figure comes from) for one group, None without any figure."""
    where = " on this machine" if group.here else ""
    stated = minutes_per_run.get(group.name) if isinstance(minutes_per_run, dict) else None
    if group.quiet:
        return (statistics.median(group.quiet) / 60,
                f"median of {_plural(len(group.quiet), 'finished run')}{where}")
    if group.loaded:
        return (statistics.median(group.loaded) / 60,
                f"median of {_plural(len(group.loaded), 'loaded run')}{where}, an over-estimate")
    if stated:
        return stated, f"the grid's minutes_per_run.{group.name}, until its runs finish here"
    if everyone:
        return statistics.median(everyone) / 60, "median of the other methods' finished runs"
    if minutes_per_run and not isinstance(minutes_per_run, dict):
        return minutes_per_run, "the grid's minutes_per_run, until runs finish here"
    return None


def per_run_minutes(groups: list[GroupTimes],
                    minutes_per_run: MinutesPerRun) -> dict[str, tuple[float, str] | None]:
    """{group name: (minutes per run, where the figure comes from) or None}: the figure each
    group's runs are expected to take (`remaining_text` says how it is chosen)."""
    everyone = [t for g in groups for t in g.quiet]
    return {g.name: _per_run(g, everyone, minutes_per_run) for g in groups}


def remaining_text(
    groups: list[GroupTimes], *, total: int, jobs: int, minutes_per_run: MinutesPerRun
) -> str:
    """ "12 of 108 runs remain; about 3.1 h with --jobs 2 (simclr 31 min per run: median of 40
    finished runs; byol ...)", or why no estimate can be given yet. A group's figure is the median
    of its quietly timed finished runs; without one, of its loaded runs (an over-estimate); then
    the grid's figure for that method by name (`minutes_per_run = { mocov2 = 80 }`: methods
    differ severalfold in cost, so another method's runs say little); then the median of every
    group's quiet runs; then the grid's single `minutes_per_run` figure."""
    left = sum(g.left for g in groups)
    head = f"{left} of {total} runs remain"
    if not left:
        return head + ": nothing to run"
    figures = per_run_minutes(groups, minutes_per_run)
    minutes, parts = 0.0, []
    for group in (g for g in groups if g.left):
        figure = figures[group.name]
        if figure is None:
            return head + "; no estimate until one has finished"
        per_run, source = figure
        minutes += group.left * per_run
        parts.append(f"{group.name} {per_run:.0f} min per run: {source}")
    hours = minutes / max(1, jobs) / 60
    return f"{head}; about {hours:.1f} h with --jobs {jobs} ({'; '.join(parts)})"
