"""Hostile uses of run directories: two writers at once, resumes that would change the run,
resuming a finished run, and sweep cells that must be one run or two. One table line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest

from helpers import tiny_overrides
from hostile_kit import cli, resume, run_copy, short, snapshot
from synccp.grid import SweepError, load_grid, plan
from synccp.rundir import read_metrics
from synccp.rundir.lock import LOCK, RunLock, holder
from synccp.sweep import run_state, run_sweep

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture
def run(finished_template, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    return run_copy(finished_template, tmp_path, interrupted=True)


def _sets(run):
    return [
        a
        for s in tiny_overrides(json.loads((run / "config.json").read_text())["data"]["root"])
        for a in ("--set", s)
    ]


# ------------------------------------------------------------------ one writer per run directory
@pytest.mark.parametrize("how", ["--resume", "new run into it", "new run, empty dir"])
def test_a_locked_run_directory_refuses_a_second_writer(run, tmp_path, capsys, hostile, how):
    target = run if how == "--resume" else tmp_path / "fresh"
    with RunLock(target):
        before = snapshot(target)
        if how == "--resume":
            code, text = resume(capsys, target)
        else:
            code, text = cli(capsys, "pretrain", "--no-eval", "--out", target, *_sets(run))
        after = snapshot(target)
    hostile("exit 2 naming the holder (pid, host), nothing written", short(code, text, 22))
    assert code == 2 and f"in use by pid {os.getpid()}" in text and "host" in text, text
    assert after == before


def test_a_stale_lock_of_a_killed_holder_is_taken_over(run, capsys, caplog, hostile):
    (run / LOCK).write_text(
        json.dumps({"pid": 999999, "host": "gone", "since": "then", "command": "x"})
    )
    code, _ = resume(capsys, run)
    warned = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    hostile(
        "exit 0, warning: took over the stale lock of pid 999999",
        short(code, warned[0] if warned else ""),
    )
    assert code == 0 and warned and "pid 999999" in warned[0]
    assert (run / LOCK).read_text() == "" and holder(run) is None  # released: emptied


def test_the_lock_is_released_when_the_run_fails(run, capsys, hostile):
    code, text = resume(capsys, run, "--set", "train.lr=1e5")  # refused: would change the run
    with RunLock(run):
        pass
    hostile(
        "the failed command leaves no lock behind", f"{short(code, text, 6)}; holder={holder(run)}"
    )
    assert code == 2 and holder(run) is None


def test_a_real_second_writer_is_refused_and_records_stay_unique(run, tmp_path, hostile):
    target = (
        tmp_path / "long"
    )  # a run far longer than the test (400 epochs), killed once the second is refused
    argv = [sys.executable, "-m", "synccp", "pretrain", "--no-eval", "--out", str(target)]
    sets = [
        a
        for s in tiny_overrides(
            json.loads((run / "config.json").read_text())["data"]["root"],
            **{"train.epochs": 400, "sparsity.end_epoch": 30},
        )
        for a in ("--set", s)
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(
        argv + sets, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    deadline = time.monotonic() + 120
    while holder(target) is None and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    second = subprocess.run(
        argv + ["--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    still_running = first.poll() is None
    first.kill()  # SIGKILL: the kernel releases its lock
    first.wait(timeout=60)
    records = Counter((r["kind"], r["step"]) for r in read_metrics(target))
    duplicates = sum(n - 1 for n in records.values())
    hostile(
        "second (--resume) exits 2 naming the holder; no duplicate (kind, step); lock freed by "
        "SIGKILL",
        f"code {second.returncode}, {duplicates} duplicates, holder after kill {holder(target)}; "
        f"{second.stderr[second.stderr.find('in use') :][:90]}",
    )
    assert (
        still_running and second.returncode == 2 and f"in use by pid {first.pid}" in second.stderr
    ), second.stderr
    assert duplicates == 0 and holder(target) is None


def test_a_lock_path_that_is_a_directory_exits_2(run, capsys, hostile):
    (run / LOCK).unlink()  # the template's (released, empty) lock file
    (run / LOCK).mkdir()
    code, text = resume(capsys, run)
    hostile("exit 2: .lock must be a plain file", short(code, text))
    assert code == 2 and ".lock must be a plain file" in text


def test_a_file_system_without_locks_exits_2_naming_the_lock(run, capsys, monkeypatch, hostile):
    import errno

    import synccp.rundir.lock as lock

    def unsupported(fd, operation):
        if operation & lock.fcntl.LOCK_EX:
            raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", unsupported)
    before = snapshot(run)
    code, text = resume(capsys, run)
    hostile("exit 2 naming .lock: the file system may not support locks", short(code, text))
    assert code == 2 and ".lock: cannot lock the run directory (No locks available)" in text
    assert snapshot(run) == before


# ------------------------------------------------------------------ resume takes the stored config
@pytest.mark.parametrize(
    "extra, ok, words",
    [
        ([], True, ""),
        (["--set", "train.progress=false"], True, ""),
        (["--set", "train.log_every=1"], True, ""),
        (["--set", "train.epochs=5"], False, "train.epochs (stored 2.0, given 5.0)"),
        (["--set", "train.seed=3"], False, "train.seed (stored 0, given 3)"),
        (["--set", 'method.name="simclr"'], False, "method.name"),
        (["--set", "train.nope=1"], False, "train.nope"),
    ],
    ids=["alone", "progress", "log cadence", "epochs", "seed", "method", "unknown key"],
)
def test_resume_takes_the_stored_config_and_refuses_changes(run, capsys, hostile, extra, ok, words):
    before = snapshot(run)
    code, text = resume(capsys, run, *extra)
    hostile(
        "exit 0 with the stored config"
        if ok
        else f"exit 2 naming {words or 'the key'}, nothing touched",
        short(code, text),
    )
    if ok:
        assert code == 0 and (run / "model.safetensors").is_file()
    else:
        assert code == 2 and words in text and snapshot(run) == before, text


def test_resume_with_the_whole_original_command_still_works(run, capsys, hostile):
    code, text = resume(capsys, run, *_sets(run))
    hostile("exit 0: --config/--set repeating the run are accepted", short(code, text, 8))
    assert code == 0


def test_resume_without_out_exits_2(capsys, hostile):
    code, text = cli(capsys, "pretrain", "--resume")
    hostile("exit 2: --resume needs --out", short(code, text))
    assert code == 2 and "--resume needs --out" in text


@pytest.mark.parametrize(
    "content, words",
    [
        (None, ""),
        (b"[1]", "table of sections"),
        (b"{", "not valid JSON"),
        (b'{"trian": {}}', "trian"),
    ],
    ids=["a run's config.json", "a list", "invalid JSON", "unknown section"],
)
def test_config_json_is_accepted_by_config(run, tmp_path, capsys, hostile, content, words):
    source = run / "config.json"
    if content is not None:
        source = tmp_path / "c.json"
        source.write_bytes(content)
    code, text = cli(
        capsys, "pretrain", "--no-eval", "--config", source, "--out", tmp_path / "again"
    )
    hostile(
        "exit 0, the same resolved config" if content is None else f"exit 2 naming c.json: {words}",
        short(code, text),
    )
    if content is None:
        assert code == 0 and json.loads(
            (tmp_path / "again" / "config.json").read_text()
        ) == json.loads((run / "config.json").read_text())
    else:
        assert (
            code == 2 and "c.json" in text and words in text and not (tmp_path / "again").exists()
        )


def test_resuming_a_finished_run_leaves_it_untouched(finished_template, tmp_path, capsys, hostile):
    run = run_copy(finished_template, tmp_path)
    before = snapshot(run)
    code, text = cli(
        capsys, "pretrain", "--out", run, "--resume"
    )  # with eval: eval.json untouched too
    hostile("exit 0, says finished, every file byte-identical", short(code, text, 12))
    assert (
        code == 0
        and "finished run" in text
        and "left untouched" in text
        and snapshot(run) == before
    )


def test_resuming_a_finished_run_with_a_bad_summary_exits_2(
    finished_template, tmp_path, capsys, hostile
):
    run = run_copy(finished_template, tmp_path)
    (run / "summary.json").write_text("[]")
    before = snapshot(run)
    code, text = cli(capsys, "pretrain", "--out", run, "--resume")
    hostile("exit 2 naming summary.json, nothing touched", short(code, text))
    assert code == 2 and "summary.json" in text and snapshot(run) == before


# ------------------------------------------------------------------ sweep cells
def _grid(tmp_path, body):
    path = tmp_path / "g.toml"
    path.write_text(f'[sweep]\nseeds = [0]\nout = "{tmp_path / "runs"}"\n' + body)
    return load_grid(path)


@pytest.mark.parametrize(
    "values, cells",
    [("[0.004891, 0.005313]", 2), ("[1, 1.0]", 1), ("[0.1, 0.1]", 1)],
    ids=["close learning rates", "int and float", "repeated"],
)
def test_cell_identity_is_the_resolved_run(tmp_path, hostile, values, cells):
    found = plan(_grid(tmp_path, f"[grid]\ntrain.lr = {values}\n"))
    hostile(
        f"{cells} cell(s), {cells} run director(ies)",
        f"{len(found)} cells, {len({c.run_dir for c in found})} dirs",
    )
    assert len(found) == cells == len({c.run_dir for c in found})


def test_four_thousand_cells_are_all_kept(tmp_path, hostile):
    lrs = ", ".join(f"{0.001 + i * 1e-7:.7f}" for i in range(400))
    densities = ", ".join(f"{d / 100}" for d in range(81, 91))  # + the default Δ = 0.1 stays ≤ 1
    found = plan(_grid(tmp_path, f"[grid]\ntrain.lr = [{lrs}]\nsparsity.density = [{densities}]\n"))
    hostile(
        "4000 cells, 4000 distinct run directories",
        f"{len(found)} cells, {len({c.name for c in found})} names",
    )
    assert len(found) == 4000 == len({c.name for c in found})


def test_twenty_thousand_identities_are_distinct(tmp_path, hostile):
    from synccp.grid import cell_identity

    resolved = plan(_grid(tmp_path, "[grid]\ntrain.lr = [0.1]\n"))[0].resolved
    identities = {
        cell_identity(
            {**resolved, "train": {**resolved["train"], "lr": 0.001 + i * 1e-7, "seed": i % 3}}
        )
        for i in range(20000)
    }
    hostile("20000 resolved configs, 20000 identities", f"{len(identities)} identities")
    assert len(identities) == 20000


def test_a_log_cadence_change_keeps_the_cell(tmp_path, hostile):
    a = plan(_grid(tmp_path, "[fixed]\ntrain.log_every = 5\n"))[0]
    b = plan(_grid(tmp_path, "[fixed]\ntrain.log_every = 7\n"))[0]
    hostile("same run directory (log cadence cannot change the result)", f"{a.name} / {b.name}")
    assert a.name == b.name


def test_a_digest_collision_is_refused(tmp_path, monkeypatch, hostile):
    import synccp.grid as grid

    monkeypatch.setattr(grid, "cell_identity", lambda resolved: "0" * 16)
    try:
        plan(_grid(tmp_path, "[grid]\ntrain.lr = [0.1, 0.2]\n"))
        got = "planned"
    except SweepError as err:
        got = str(err)
    hostile("SweepError: two different cells share an identity", got)
    assert "share the identity" in got


@pytest.mark.parametrize("same", [True, False], ids=["same run", "different run"])
def test_a_directory_named_by_the_old_digest(tmp_path, hostile, same):
    grid = _grid(tmp_path, "[grid]\ntrain.lr = [0.1]\n")
    cell = plan(grid)[0]
    legacy = grid.out / cell.name.replace(cell.name.rsplit("_", 1)[1], grid_legacy(grid))
    legacy.mkdir(parents=True)
    resolved = dict(
        cell.resolved,
        train={
            **cell.resolved["train"],
            "epochs": 1.0 if not same else cell.resolved["train"]["epochs"],
        },
    )
    (legacy / "config.json").write_text(json.dumps(resolved))
    again = plan(grid)[0]
    hostile(
        "reused when it holds exactly this run, else not",
        f"{again.run_dir.name} (legacy {legacy.name})",
    )
    assert (again.run_dir == legacy) is same


def grid_legacy(grid):
    from synccp.cells import _legacy_digest
    from synccp.config import default_config_dict
    from synccp.grid import DEFAULTS

    settings = {**DEFAULTS, **grid.fixed, "train.lr": 0.1, "train.seed": 0}
    return _legacy_digest({"base": default_config_dict(), "settings": settings})


def test_the_sweep_skips_a_locked_cell_and_says_so(tmp_path, hostile, caplog):
    grid_path = tmp_path / "g.toml"
    grid_path.write_text(
        f'[sweep]\nseeds = [0]\nout = "{tmp_path / "runs"}"\n[grid]\ntrain.lr = [0.1, 0.2]\n'
    )
    cell = plan(load_grid(grid_path))[0]
    launched = []
    with RunLock(cell.run_dir), caplog.at_level("INFO", logger="synccp.sweep"):
        state = run_state(cell.run_dir)
        result = run_sweep(
            grid_path, runner=lambda argv, log, env: launched.append(argv) or 0, progress=False
        )
    mine = [argv for argv in launched if any(str(cell.run_dir) in str(a) for a in argv)]
    # without a terminal, the line of each cell that ran counts the locked one too
    lines = [r.getMessage() for r in caplog.records if "cells done" in r.getMessage()]
    assert len(lines) == 1 and "in use elsewhere" in lines[0]
    hostile(
        "state locked naming the holder; not run; sweep not ok",
        f"{state[0]}: {state[1][:60]}; launched for it {len(mine)}, ok={result.ok}",
    )
    assert launched and not mine  # the other cell ran
    assert state[0] == "locked" and "pid" in state[1] and not result.ok
    assert cell.name in result.locked and cell.name not in result.completed
