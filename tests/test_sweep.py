"""The sweep runner: grid parsing, validation errors, run-dir names, skip/resume, a fake runner."""

import json
import logging
import re
import sys
import threading
import time
from pathlib import Path

import pytest

import synccp.sweep as sweep
from synccp import study
from synccp.config import config_to_dict, load_config, parse_override
from synccp.grid import SweepError, cell_name, load_grid, plan
from synccp.sweep import format_plan, format_remaining, format_summary, run_state, run_sweep

ROOT = Path(__file__).resolve().parents[1]
GRIDS = sorted((ROOT / "configs" / "grids").glob("*.toml"))
# the GPU-scale presets of docs/scale.md (ImageNet, CIFAR at the paper's scale) are checked in
# tests/data/test_stream.py; every other preset is a CPU one
SCALE_PRESETS = (
    "imagenet_byol_r50_synccp.toml",
    "imagenet_byol_r50_synccp_nm.toml",
    "cifar10_byol_r18_synccp.toml",
    "cifar100_byol_r18_synccp.toml",
)
PRESETS = sorted(p for p in (ROOT / "configs").glob("*.toml") if p.name not in SCALE_PRESETS)

FIXED = """
[fixed]
data.subset = 500
train.epochs = 2
sparsity.start_epoch = 0
sparsity.end_epoch = 1
"""


@pytest.fixture(autouse=True)
def _evaluation_data(fmnist_root):
    """A sweep reads each evaluation split before it launches anything: give it the fixture data
    (SYNCCP_DATA), so no test depends on the machine's own Fashion-MNIST."""
    return fmnist_root


def _grid(tmp_path, body, name="g.toml"):
    path = tmp_path / name
    path.write_text(body)
    return path


def _resolved(cell, base=None):
    return json.loads(json.dumps(config_to_dict(load_config(base, cell.set_args()))))


# --- grid files -------------------------------------------------------------------------------


def test_cartesian_grid_plus_explicit_cells_times_seeds(tmp_path):
    path = _grid(
        tmp_path,
        f"""
[sweep]
seeds = [0, 1]
{FIXED}
sparsity.density_gap = 0.1

[grid]
sparsity.algorithm = ["gmp", "synccp"]
sparsity.density = [0.2, 0.1]

[[cells]]
"sparsity.algorithm" = "synccp"
sparsity.density_gap = [0.0, 0.3]
""",
    )
    grid = load_grid(path)
    assert grid.name == "g" and grid.out == Path("runs/g") and grid.seeds == (0, 1)
    cells = plan(grid)
    assert len(cells) == (2 * 2 + 2) * 2
    own = [c.overrides for c in cells[::2]]
    assert own[:4] == [
        {"sparsity.algorithm": a, "sparsity.density": d}
        for a in ("gmp", "synccp")
        for d in (0.2, 0.1)
    ]
    assert own[4:] == [
        {"sparsity.algorithm": "synccp", "sparsity.density_gap": g} for g in (0.0, 0.3)
    ]
    assert [c.seed for c in cells[:2]] == [0, 1]
    last = cells[-1].settings
    assert last["sparsity.density_gap"] == 0.3 and last["data.subset"] == 500  # cell beats [fixed]
    assert last["train.seed"] == 1 and last["train.progress"] is False
    assert cells[-1].set_args()[-1] == "train.seed=1"
    assert all(
        parse_override(text)[1] == cells[0].settings[text.split("=")[0]]
        for text in cells[0].set_args()
    )


def test_a_cell_table_may_list_its_own_seeds(tmp_path):
    """`seeds` inside [[cells]] replaces [sweep] seeds for that table only; the run of a seed both
    lists share is the same cell (same name and directory), so a third seed adds one run."""
    body = f"""
[sweep]
seeds = [0, 1]
{FIXED}
[[cells]]
sparsity.algorithm = "gmp"

[[cells]]
seeds = [0, 1, 2]
sparsity.algorithm = "synccp"
"""
    cells = plan(load_grid(_grid(tmp_path, body)))
    assert [(c.overrides["sparsity.algorithm"], c.seed) for c in cells] == [
        ("gmp", 0),
        ("gmp", 1),
        ("synccp", 0),
        ("synccp", 1),
        ("synccp", 2),
    ]
    two = {
        c.name
        for c in plan(load_grid(_grid(tmp_path, body.replace("seeds = [0, 1, 2]", ""), "h.toml")))
    }
    assert two < {c.name for c in cells}
    with pytest.raises(
        SweepError, match=r"\[\[cells\]\] #2 seeds must be a non-empty list of integers"
    ):
        load_grid(_grid(tmp_path, body.replace("seeds = [0, 1, 2]", "seeds = []"), "bad.toml"))


def test_identical_cells_run_once(tmp_path):
    path = _grid(
        tmp_path,
        FIXED
        + """
[grid]
sparsity.density = [0.1, 0.2]
[[cells]]
sparsity.density = 0.1
""",
    )
    assert [c.overrides["sparsity.density"] for c in plan(load_grid(path))] == [0.1, 0.2]


def test_extends_inherits_cells_and_overrides_fixed(tmp_path):
    _grid(
        tmp_path,
        "[sweep]\nseeds = [0, 1]\njobs = 1\n" + FIXED + "[grid]\nsparsity.density = [0.1, 0.2]\n",
        "parent.toml",
    )
    child = _grid(
        tmp_path,
        '[sweep]\nextends = "parent.toml"\njobs = 3\n[fixed]\ntrain.epochs = 4\n',
        "child.toml",
    )
    grid = load_grid(child, overrides=["model.width=32"])
    assert grid.name == "child" and grid.jobs == 3 and grid.seeds == (0, 1)
    assert grid.fixed["train.epochs"] == 4 and grid.fixed["data.subset"] == 500
    assert grid.fixed["model.width"] == 32
    assert len(plan(grid)) == 4


@pytest.mark.parametrize(
    "body, words",
    [
        ("[grid]\ndensity = [0.1]\n", ["[grid]", "'density'", "section.key"]),
        ("[fixed]\ntrain.seed = 3\n", ["train.seed", "seeds"]),
        ("[grid]\nsparsity.density = []\n", ["'sparsity.density'", "empty"]),
        ("[sweep]\nsedes = [0]\n", ["sedes"]),
        ("[sweep]\nseeds = [0.5]\n", ["seeds"]),
        ("[sweep]\njobs = 0\n", ["jobs"]),
        ("[fixed]\nsparsity.density = [0.1, 0.2]\n", ["[fixed]", "sparsity.density", "[grid]"]),
        ('[sweep]\nbase = "missing.toml"\n', ["base", "missing.toml"]),
        ("[grid]\nsparsity.density = [{a = 1}]\n", ["sparsity.density"]),
        ("[grdi]\n", ["grdi"]),
    ],
)
def test_structural_errors_name_the_file_and_key(tmp_path, body, words):
    path = _grid(tmp_path, body)
    with pytest.raises(SweepError) as err:
        load_grid(path)
    message = str(err.value)
    assert str(path) in message or "missing.toml" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "cell, key",
    [
        ("sparsity.density = [0.1, 1.5]", "sparsity.density"),
        ("sparsity.densty = [0.1]", "sparsity.densty"),
        ('sparsity.algorithm = ["synccp", "prune-it"]', "sparsity.algorithm"),
        ("sparsity.end_epoch = [1.0, 9.0]", "sparsity.end_epoch"),
    ],
)
def test_validation_errors_name_grid_cell_and_key_before_running(tmp_path, cell, key):
    path = _grid(tmp_path, FIXED + "[grid]\n" + cell + "\n")
    calls = []
    with pytest.raises(SweepError) as err:
        run_sweep(
            path, out=tmp_path / "runs", runner=lambda *a: calls.append(a) or 0, progress=False
        )
    message = str(err.value)
    assert str(path) in message and key in message and "cell " in message
    assert calls == [] and not (tmp_path / "runs").exists()


def test_run_dir_names_are_readable_deterministic_and_track_every_setting(tmp_path):
    body = (
        FIXED
        + '[grid]\nmethod.name = ["byol"]\nsparsity.algorithm = ["synccp"]\nsparsity.density = '
          '[0.1, 0.05]\n'
    )
    first = [c.name for c in plan(load_grid(_grid(tmp_path, body)))]
    again = [c.name for c in plan(load_grid(_grid(tmp_path, body)))]
    assert first == again
    assert first[0].startswith("byol_synccp_d0.1_s0_") and first[1].startswith(
        "byol_synccp_d0.05_s0_"
    )
    changed = [
        c.name
        for c in plan(
            load_grid(_grid(tmp_path, body.replace("train.epochs = 2", "train.epochs = 3")))
        )
    ]
    assert changed[0] != first[0] and changed[0].rsplit("_", 1)[0] == first[0].rsplit("_", 1)[0]
    assert cell_name({"train.lr": 0.4, "sparsity.n": 2}, 1, "abcdef") == "lr0.4_n2_s1_abcdef"


# --- skip / resume decisions on fabricated run directories --------------------------------------


def _files(run_dir, *names):
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("{}")


def test_run_state_of_every_stage(tmp_path):
    expected = {"train": {"seed": 0}}
    run = tmp_path / "run"
    assert run_state(run, expected) == ("new", "")
    run.mkdir()
    assert run_state(run, expected) == ("new", "")
    (run / "config.json").write_text(json.dumps(expected))
    assert run_state(run, expected)[0] == "restart"  # stopped before its first checkpoint
    _files(run, "checkpoints/last.pt")
    assert run_state(run, expected)[0] == "resume"
    _files(run, "summary.json")
    assert run_state(run, expected)[0] == "eval"
    _files(run, "eval.json")
    assert run_state(run, expected, want_cost=True)[0] == "cost"
    assert run_state(run, expected, want_cost=False)[0] == "done"
    _files(run, "cost.json")
    assert run_state(run, expected, want_cost=True)[0] == "done"
    action, reason = run_state(run, {"train": {"seed": 1}})
    assert action == "conflict" and "train.seed" in reason
    _files(tmp_path / "other", "notes.txt")
    assert run_state(tmp_path / "other", expected)[0] == "conflict"


# --- running a sweep through a fake runner ------------------------------------------------


class FakeRunner:
    """Stands in for the subprocesses: writes what pretrain / eval / cost would write."""

    def __init__(self, fail_when=None, delay=0.0):
        self.calls, self.fail_when, self.delay = [], fail_when, delay
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, argv, log, env):
        with self.lock:
            self.calls.append(argv)
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(" ".join(argv) + "\n")
        command = argv[argv.index("synccp") + 1]
        run = Path(
            argv[argv.index("synccp") + 2 if command != "pretrain" else argv.index("--out") + 1]
        )
        if self.fail_when and self.fail_when in " ".join(argv):
            if command == "pretrain":
                sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
                run.mkdir(parents=True, exist_ok=True)
                (run / "config.json").write_text(
                    json.dumps(config_to_dict(load_config(None, sets)))
                )
            return 1
        if command == "pretrain":
            sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
            run.mkdir(parents=True, exist_ok=True)
            (run / "config.json").write_text(json.dumps(config_to_dict(load_config(None, sets))))
            (run / "summary.json").write_text("{}")
        else:
            (run / f"{command}.json").write_text("{}")
        return 0


def _small_grid(tmp_path, extra=""):
    return _grid(
        tmp_path,
        f"[sweep]\nseeds = [0]\n{extra}\n{FIXED}\n[grid]\n"
        'sparsity.algorithm = ["gmp", "rigl", "synccp"]\n',
    )


def test_eta_runs_the_cells_left_jobs_at_a_time_at_the_mean_cell_time():
    # Two cells of 48 and 50 min ran side by side; 103 are left for 2 jobs: 52 rounds of 49 min.
    assert sweep._eta(50 * 60, [48 * 60, 50 * 60], 103, 2) == "50 min so far, about 2548 min left"
    # The first of a lockstep round alone: not 104 × 48 min as elapsed / finished would say.
    assert sweep._eta(48 * 60, [48 * 60], 104, 2) == "48 min so far, about 2496 min left"
    assert sweep._eta(48 * 60, [48 * 60], 1, 2) == "48 min so far, about 48 min left"
    assert sweep._eta(60, [60], 0, 2) == "1 min so far"
    assert sweep._eta(60, [], 3, 2) == "1 min so far"  # only failures so far: no figure


def test_sweep_runs_cells_reports_failures_then_skips_finished(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sweep, "cost_available", lambda: True)
    path, out = _small_grid(tmp_path), tmp_path / "runs"
    runner = FakeRunner(fail_when='sparsity.algorithm="rigl"')
    with caplog.at_level("INFO", logger="synccp.sweep"):
        result = run_sweep(path, out=out, runner=runner, progress=False)
    lines = [
        r.getMessage() for r in caplog.records if "cells done" in r.getMessage()
    ]  # no bar: a line per cell
    assert len(lines) == 3 and "(2 of 3 cells done, 1 failed;" in lines[-1]
    assert "min so far" in lines[-1]
    assert sum("FAILED" in line for line in lines) == 1 and "min left" in lines[0]
    assert (
        not result.ok
        and len(result.completed) == 2
        and list(result.failed) == [result.cells[1].name]
    )
    assert "pretrain exited with code 1" in result.failed[result.cells[1].name]
    done = result.cells[0].run_dir
    assert {"config.json", "summary.json", "eval.json", "cost.json", "log.txt"} <= {
        p.name for p in done.iterdir()
    }
    assert [a[a.index("synccp") + 1] for a in runner.calls if str(done) in a] == [
        "pretrain",
        "eval",
        "cost",
    ]
    pretrain = next(a for a in runner.calls if "pretrain" in a and str(done) in a)
    assert pretrain[0] == sys.executable and "--no-eval" in pretrain and "--resume" not in pretrain
    assert "pretrain" in (done / "log.txt").read_text()
    assert "FAILED" in format_summary(result) and "2 completed" in format_summary(result)

    again = FakeRunner()
    second = run_sweep(path, out=out, runner=again, progress=False)
    assert second.ok and second.skipped == [result.cells[0].name, result.cells[2].name]
    assert second.actions[result.cells[1].name] == "restart" and second.completed == [
        result.cells[1].name
    ]
    assert all(str(result.cells[1].run_dir) in " ".join(a) for a in again.calls)


def test_sweep_resumes_interrupted_and_evaluates_trained_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    path, out = _small_grid(tmp_path), tmp_path / "runs"
    cells = plan(load_grid(path), out=out)
    (cells[0].run_dir / "checkpoints").mkdir(parents=True)
    (cells[0].run_dir / "config.json").write_text(json.dumps(_resolved(cells[0])))
    (cells[0].run_dir / "checkpoints" / "last.pt").write_text("x")
    _files(cells[1].run_dir, "summary.json")
    (cells[1].run_dir / "config.json").write_text(json.dumps(_resolved(cells[1])))
    dry = run_sweep(path, out=out, dry_run=True)
    assert [dry.actions[c.name] for c in cells] == ["resume", "eval", "new"]
    assert "resume" in format_plan(dry) and "1 resume, 1 eval, 1 new" in format_plan(dry)
    runner = FakeRunner()
    result = run_sweep(path, out=out, runner=runner, progress=False)
    assert result.ok and any("no cost.json" in w for w in result.warnings)
    commands = {
        c.name: [a[a.index("synccp") + 1] for a in runner.calls if str(c.run_dir) in " ".join(a)]
        for c in cells
    }
    assert commands == {
        cells[0].name: ["pretrain", "eval"],
        cells[1].name: ["eval"],
        cells[2].name: ["pretrain", "eval"],
    }
    assert any("--resume" in a for a in runner.calls if str(cells[0].run_dir) in a)


def test_launcher_wraps_pretrain_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    path = _small_grid(tmp_path, 'launcher = "torchrun --nproc_per_node=2"')
    runner = FakeRunner()
    run_sweep(path, out=tmp_path / "runs", runner=runner, progress=False)
    pretrain = [a for a in runner.calls if "pretrain" in a]
    assert pretrain and all(
        a[:4] == ["torchrun", "--nproc_per_node=2", "-m", "synccp"] for a in pretrain
    )
    assert all(a[0] == sys.executable for a in runner.calls if "eval" in a)


def test_jobs_run_cells_concurrently(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    runner = FakeRunner(delay=0.15)
    result = run_sweep(
        _small_grid(tmp_path), out=tmp_path / "runs", runner=runner, jobs=3, progress=False
    )
    assert result.ok and runner.peak >= 2


def test_dry_run_touches_nothing_and_explains_conflicts(tmp_path):
    path = _small_grid(tmp_path)
    result = run_sweep(path, out=tmp_path / "runs", dry_run=True)
    assert (
        result.dry_run
        and set(result.actions.values()) == {"new"}
        and not (tmp_path / "runs").exists()
    )
    _files(result.cells[0].run_dir, "notes.txt")
    again = run_sweep(path, out=tmp_path / "runs", dry_run=True)
    assert again.actions[result.cells[0].name] == "conflict"
    assert "holds files but no config.json" in format_plan(again)
    with pytest.raises(SweepError, match="--jobs"):
        run_sweep(path, jobs=0)


def test_conflicting_cell_fails_without_running_and_others_go_on(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    path, out = _small_grid(tmp_path), tmp_path / "runs"
    cells = plan(load_grid(path), out=out)
    _files(cells[0].run_dir, "notes.txt")
    runner = FakeRunner()
    result = run_sweep(path, out=out, runner=runner, progress=False)
    assert list(result.failed) == [cells[0].name] and len(result.completed) == 2
    assert not any(str(cells[0].run_dir) in " ".join(a) for a in runner.calls)


def test_subprocess_runner_appends_output_to_log(tmp_path):
    log = tmp_path / "logs" / "log.txt"
    code = sweep.subprocess_runner([sys.executable, "-c", "print('hello from a run')"], log, {})
    assert code == 0 and "hello from a run" in log.read_text() and log.read_text().startswith("$ ")


def test_subprocess_runner_returns_the_exit_code_and_counts_the_childs_cpu_time(tmp_path):
    log = tmp_path / "log.txt"
    sweep._CHILD_CPU.seconds = 0.0
    burn = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\n"
    assert sweep.subprocess_runner([sys.executable, "-c", burn + "sys.exit(3)"], log, {}) == 3
    assert 0.4 <= sweep._CHILD_CPU.seconds < 5  # added, and only this thread's children
    seen = []
    other = threading.Thread(target=lambda: seen.append(getattr(sweep._CHILD_CPU, "seconds", 0)))
    other.start()
    other.join()
    assert seen == [0]


class CpuRunner(FakeRunner):
    """FakeRunner whose pretrain also runs a real process: one that computes or one that waits."""

    def __init__(self, busy):
        super().__init__()
        self.busy = busy

    def __call__(self, argv, log, env):
        code = super().__call__(argv, log, env)
        if code == 0 and argv[argv.index("synccp") + 1] == "pretrain":
            work = ("t = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
                    if self.busy else "time.sleep(0.6)")
            assert sweep.subprocess_runner([sys.executable, "-c", "import time\n" + work],
                                           log, env) == 0
        return code


def test_sweep_records_the_cpu_share_and_a_starved_run_counts_as_loaded(tmp_path, monkeypatch):
    # a run that waited for its cores (here: slept) has a low cpu_share; its wall time is not a
    # quiet run's and the estimate treats it as loaded, with no one marking it by hand
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    shares, cpu = {}, {}
    for busy in (True, False):
        out = tmp_path / f"busy{busy}"
        result = run_sweep(_small_grid(tmp_path), out=out, runner=CpuRunner(busy), progress=False,
                           jobs=1)
        assert result.ok
        records = [json.loads((c.run_dir / "sweep.json").read_text()) for c in result.cells]
        assert all(0.6 <= r["cpu_s"] <= r["wall_s"] * 1.05 for r in records if busy)
        shares[busy] = [r["cpu_share"] for r in records]
        cpu[busy] = [r["cpu_s"] for r in records]
        quiet, loaded, _ = study.wall_times([c.run_dir for c in result.cells])
        starved = sum(share < study.LOADED_SHARE for share in shares[busy])
        assert (len(quiet), len(loaded)) == (3 - starved, starved)  # busy: as the machine allows
    assert all(share < study.LOADED_SHARE for share in shares[False])
    # the CPU time is the children's, whatever else the machine runs; the busy runs' share is not
    # asserted: on a loaded machine they wait for a core too, and then they count as loaded
    assert min(cpu[True]) >= 0.6 > 0.3 > max(cpu[False]) and max(shares[False]) < 0.25, cpu


def test_a_resumed_runs_record_sums_cpu_time_or_drops_it_when_a_sweep_did_not_measure_it(tmp_path):
    study.write_sweep_record(tmp_path, cell="c", wall_s=100.0, jobs=2, cpu_s=90.0, threads=1)
    study.write_sweep_record(tmp_path, cell="c", wall_s=100.0, jobs=2, cpu_s=50.0, threads=1)
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert (record["wall_s"], record["cpu_s"], record["cpu_share"]) == (200.0, 140.0, 0.7)
    assert study.is_loaded(record) and not study.is_loaded({**record, "cpu_share": 0.97})
    assert study.is_loaded({"timing": "loaded"}) and not study.is_loaded({"wall_s": 1.0})
    two = tmp_path / "two"
    study.write_sweep_record(two, cell="c", wall_s=100.0, jobs=1, cpu_s=190.0, threads=2)
    assert json.loads((two / "sweep.json").read_text())["cpu_share"] == 0.95  # of 2 cores
    study.write_sweep_record(two, cell="c", wall_s=100.0, jobs=1)  # a runner that cannot measure
    assert "cpu_s" not in json.loads((two / "sweep.json").read_text())


def test_a_run_trained_outside_the_sweep_gets_an_untimed_record_left_out_of_estimates(
        tmp_path, monkeypatch, caplog):
    # tools/learning_curve.py trains a cell's run itself; the sweep then only costs it. Its few
    # seconds are not the run's time: the first cpu_protocol estimate after one such run read
    # "about 0 min left" and a 2.8 s median would have started runs that cannot finish.
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    path, out = _small_grid(tmp_path), tmp_path / "runs"
    assert run_sweep(path, out=out, runner=FakeRunner(), progress=False, jobs=1).ok
    cells = run_sweep(path, out=out, dry_run=True).cells
    for cell in cells:
        (cell.run_dir / "sweep.json").unlink()  # trained and evaluated by hand: no record
    (cells[0].run_dir / "sweep.json").write_text(json.dumps(
        {"cell": cells[0].name, "wall_s": 600.0, "timing": "loaded"}))  # a hand-marked record
    monkeypatch.setattr(sweep, "cost_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="synccp.sweep"):
        result = run_sweep(path, out=out, runner=FakeRunner(), progress=False, jobs=1)
    assert {result.actions[c.name] for c in cells} == {"cost"} and result.ok
    assert "done (1 of 3 cells done;" in caplog.text and "min left" not in caplog.text  # no ETA
    records = [json.loads((c.run_dir / "sweep.json").read_text()) for c in cells]
    assert records[0]["timing"] == "loaded" and records[0]["wall_s"] >= 600.0  # mark kept
    assert all(r["timing"] == study.UNTIMED for r in records[1:])
    assert study.wall_times([c.run_dir for c in cells]) == ([], [records[0]["wall_s"]], False)


# --- the shipped configs ------------------------------------------------------------------------


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_shipped_grid_validates(path):
    result = run_sweep(path, dry_run=True, out=Path("/nonexistent/synccp-test"))
    assert result.cells and len({c.name for c in result.cells}) == len(result.cells)
    if path.name.startswith(("claim_", "ablation_")):  # the cells a claim rests on need >= 2 seeds
        assert len(result.cells) >= 12 and len(load_grid(path).seeds) >= 2


def test_shipped_grids_include_cpu_and_gpu_variants():
    names = {p.stem for p in GRIDS}
    for claim in (
        "claim_a_sdclr",
        "claim_b_regrow",
        "claim_c_sota",
        "ablation_gap",
        "ablation_ema",
    ):
        assert {claim, f"{claim}-gpu"} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_presets_load(path):
    cfg = load_config(path)  # CPU presets: Fashion-MNIST at a CPU width (the demo's protocol: 8)
    assert cfg.data.name == "fashion_mnist" and cfg.model.width in (8, 16)


def test_default_preset_mirrors_embedded_default():
    assert load_config(ROOT / "configs" / "default.toml") == load_config(None)


def test_cli_runs_several_grids_validating_all_first(tmp_path, monkeypatch, capsys):
    from synccp.cli import main

    first, second = (
        _small_grid(tmp_path),
        _grid(
            tmp_path, "[sweep]\nseeds = [0]\n[grid]\nsparsity.density = [1.5]\n", name="bad.toml"
        ),
    )
    calls = []
    monkeypatch.setattr(sweep, "subprocess_runner", lambda argv, log, env: calls.append(argv) or 1)
    assert main(["sweep", str(first), str(second), "--out", str(tmp_path / "runs")]) == 2
    assert (
        "bad.toml" in capsys.readouterr().err and calls == []
    )  # nothing ran: the second grid is invalid
    assert not (tmp_path / "runs").exists()
    third = _grid(
        tmp_path,
        f'[sweep]\nseeds = [1]\n{FIXED}\n[grid]\nsparsity.algorithm = ["dense"]\n',
        name="c.toml",
    )
    assert (
        main(["sweep", str(first), str(third), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    )
    plans = capsys.readouterr().out
    assert plans.count("new ") == 4 and "g.toml" in plans and "c.toml" in plans
    assert (
        main(["sweep", str(first), str(third), "--out", str(tmp_path / "runs"), "--jobs", "1"]) == 1
    )
    assert len(calls) == 4  # every cell of both grids was tried (each pretrain "failed": exit 1)


def test_a_deadline_starts_only_the_cells_expected_to_end_before_it(tmp_path, monkeypatch,
                                                                    caplog):
    monkeypatch.setattr(sweep, "cost_available", lambda: False)
    path, out = _small_grid(tmp_path, "minutes_per_run = 30"), tmp_path / "runs"
    cells = plan(load_grid(path), out=out)
    _files(cells[1].run_dir, "summary.json")  # trained already: only its evaluation is left
    (cells[1].run_dir / "config.json").write_text(json.dumps(_resolved(cells[1])))
    dry = run_sweep(path, out=out, dry_run=True)
    assert sweep.cell_seconds(dry) == {cells[0].name: 1800.0, cells[2].name: 1800.0}
    runner = FakeRunner()
    with caplog.at_level(logging.INFO, logger="synccp.sweep"):
        result = run_sweep(path, out=out, runner=runner, progress=False,
                           deadline=time.monotonic() + 20 * 60)  # 20 min: no 30-min cell fits
    assert result.ok and sorted(result.deferred) == sorted([cells[0].name, cells[2].name])
    # Deferred cells are handled at once; no line may count them as done (it read "3 of 3").
    lines = [r.getMessage() for r in caplog.records if "cells done" in r.getMessage()]
    assert len(lines) == 3 and not any(f"({n} of 3 cells done" in x for x in lines for n in (2, 3))
    assert "(1 of 3 cells done, 2 not started;" in lines[-1]
    assert result.completed == [cells[1].name]
    assert all(str(cells[1].run_dir) in " ".join(a) for a in runner.calls)  # its eval only
    assert not cells[0].run_dir.exists() and "2 not started" in format_summary(result)
    later = run_sweep(path, out=out, runner=FakeRunner(), progress=False,
                      deadline=time.monotonic() + 2 * 3600)
    assert later.ok and later.deferred == [] and len(later.completed) == 2


def test_start_before_runs_what_fits_or_has_no_estimate():
    soon = time.monotonic() + 60
    assert sweep._start_before(soon, lambda: 30.0, lambda: "ran") == "ran"
    assert sweep._start_before(soon, lambda: 600.0, lambda: "ran")[0] == sweep.DEFERRED
    assert sweep._start_before(soon, lambda: None, lambda: "ran") == "ran"
    assert sweep._start_before(None, lambda: 1e9, lambda: "ran") == "ran"


def test_expected_time_takes_this_sweeps_own_runs_once_one_has_finished(tmp_path):
    path, out = _small_grid(tmp_path, "minutes_per_run = 30"), tmp_path / "runs"
    dry = run_sweep(path, out=out, dry_run=True)
    expected = sweep.Expected(dry)
    first, second, third = dry.cells
    assert expected(second) == 1800.0  # the grid's figure: nothing has run
    expected.record(first, 2700.0)  # this machine is slower than the figure says
    expected.record(third, 2500.0)
    assert expected(second) == 2600.0


def test_minutes_per_run_by_method_reaches_the_deadline_and_bad_tables_name_the_key(tmp_path):
    path = _small_grid(tmp_path, "minutes_per_run = { simclr = 45 }")
    dry = run_sweep(path, out=tmp_path / "runs", dry_run=True)
    assert set(sweep.cell_seconds(dry).values()) == {2700.0}
    assert "simclr 45 min per run: the grid's minutes_per_run.simclr" in format_remaining(dry)
    for table, message in (("{ simclr = 0 }", "minutes_per_run.simclr must be a number > 0, got 0"),
                           ("{ moco = 80 }", "unknown method 'moco' (known: "),
                           ('"30"', "minutes_per_run must be a number > 0, got '30'")):
        bad = _grid(tmp_path, f"[sweep]\nminutes_per_run = {table}\n{FIXED}\n")
        with pytest.raises(SweepError, match=re.escape(message)) as err:
            load_grid(bad)
        assert str(bad) in str(err.value)


def test_cli_hours_must_be_positive_and_defers_what_does_not_fit(tmp_path, monkeypatch, capsys):
    from synccp.cli import main

    path = _small_grid(tmp_path, "minutes_per_run = 30")
    calls = []
    monkeypatch.setattr(sweep, "subprocess_runner", lambda argv, log, env: calls.append(argv) or 0)
    assert main(["sweep", str(path), "--out", str(tmp_path / "runs"), "--hours", "0"]) == 2
    assert "--hours must be > 0, got 0.0" in capsys.readouterr().err
    assert main(["sweep", str(path), "--out", str(tmp_path / "runs"), "--hours", "0.25"]) == 0
    assert calls == [] and "3 not started" in capsys.readouterr().out


def test_a_broken_test_split_stops_the_sweep_before_anything_trains(tmp_path, fmnist_root):
    (fmnist_root / "t10k-images-idx3-ubyte.gz").write_bytes(b"not a gzip file")
    calls = []
    with pytest.raises(SweepError, match="t10k-images") as err:
        run_sweep(
            _small_grid(tmp_path),
            out=tmp_path / "runs",
            runner=lambda *a: calls.append(a) or 0,
            progress=False,
        )
    assert "nothing was run" in str(err.value) and calls == [] and not (tmp_path / "runs").exists()
