"""A study that survives interruption: `synccp sweep --commit` commits each finished run's small
result files, and a fresh clone of the repository resumes from them (nothing re-runs)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from synccp import study
from synccp.sweep import format_remaining, run_sweep
from test_sweep import FIXED, FakeRunner

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is part of the dev setup")


def _git(cwd, *args):
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


class HeavyRunner(FakeRunner):
    """A fake pretrain that also leaves what a real one leaves: a checkpoint, model and masks."""

    def __call__(self, argv, log, env):
        code = super().__call__(argv, log, env)
        command = argv[argv.index("synccp") + 1]
        if code == 0 and command == "pretrain":
            run = Path(argv[argv.index("--out") + 1])
            (run / "checkpoints").mkdir(exist_ok=True)
            for name in ("checkpoints/last.pt", "model.safetensors", "masks.safetensors"):
                (run / name).write_bytes(b"\0" * 64)
            (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 1.0}\n')
        if code == 0 and command == "eval":
            run = Path(argv[argv.index("synccp") + 2])
            (run / "eval.json").write_text(
                json.dumps({"encoder": {"knn_top1": 81.5, "linear_top1": 84.25}})
            )
        return code


@pytest.fixture
def repo(tmp_path, monkeypatch):
    for key in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{key}_NAME", "study test")
        monkeypatch.setenv(f"GIT_{key}_EMAIL", "study@example.invalid")
    root = tmp_path / "repo"
    (root / "studies").mkdir(parents=True)
    shutil.copy(ROOT / "studies" / ".gitignore", root / "studies" / ".gitignore")
    (root / "grid.toml").write_text(
        f'[sweep]\nseeds = [0, 1]\nout = "studies/s"\ncost = false\n'
        f"minutes_per_run = 30\n{FIXED}\n[grid]\n"
        'sparsity.algorithm = ["gmp", "synccp"]\n'
    )
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "grid")
    monkeypatch.chdir(root)
    return root


def test_finished_runs_commit_small_files_only_and_a_fresh_clone_resumes(
    repo, tmp_path, monkeypatch
):
    plan = run_sweep("grid.toml", dry_run=True)
    assert format_remaining(plan, 2) == (
        "sweep grid: 4 of 4 runs remain; about 1.0 h with --jobs 2 "
        "(simclr 30 min per run: the grid's minutes_per_run, until runs finish here)"
    )
    result = run_sweep("grid.toml", runner=HeavyRunner(), progress=False, commit=True, jobs=2)
    assert result.ok and not result.warnings
    tracked = _git(repo, "ls-files", "studies/s").split()
    names = {Path(p).name for p in tracked}
    assert names == {"config.json", "summary.json", "eval.json", "metrics.jsonl", "sweep.json"}
    assert len(tracked) == 4 * 5  # every run, nothing else: no checkpoint, model or masks
    log = _git(repo, "log", "--format=%s").splitlines()
    assert (
        sum(line.startswith("study grid: ") and "(kNN 81.50, linear 84.25)" in line for line in log)
        == 4
    )
    record = json.loads(next((repo / "studies" / "s").glob("*/sweep.json")).read_text())
    assert record["cpu"] == study.cpu_model() and record["jobs"] == 2 and record["wall_s"] >= 0
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["cpu_id"] == study.cpu_id()

    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    monkeypatch.chdir(clone)
    again = run_sweep("grid.toml", dry_run=True)
    assert set(again.actions.values()) == {"done"}
    assert format_remaining(again).startswith("sweep grid: 0 of 4 runs remain: nothing to run")
    runner = HeavyRunner()
    assert run_sweep("grid.toml", runner=runner, progress=False).ok and runner.calls == []


def test_cpu_id_reads_family_and_model_of_the_first_processor():
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
            "model name\t: AMD EPYC\n\nprocessor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\n")
    assert study.cpu_id_of(text) == "family 25 model 17"
    assert study.cpu_id_of("processor\t: 0\nmodel name\t: Some ARM core\n") == ""


def test_loaded_timings_are_left_out_of_the_estimate(tmp_path):
    for name, record in (("a", {"wall_s": 600.0}), ("b", {"wall_s": 6000.0, "timing": "loaded"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.json").write_text(json.dumps(record))
        (tmp_path / name / "eval.json").write_text("{}")
    assert study.wall_times([tmp_path / "a", tmp_path / "b"]) == ([600.0], [6000.0], False)


def test_runs_of_this_machine_decide_the_estimate_once_there_are_any(tmp_path):
    """One model name ("AMD EPYC") covered machines 3× apart in speed: where this machine has
    finished runs, only they count."""
    records = {"old": {"wall_s": 2700.0, "cpu": "AMD EPYC"},
               "here": {"wall_s": 900.0, "cpu": "AMD EPYC", "cpu_capability": "AVX512"}}
    for name, record in records.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.json").write_text(json.dumps(record))
        (tmp_path / name / "eval.json").write_text("{}")
    dirs = [tmp_path / "old", tmp_path / "here"]
    assert study.wall_times(dirs, "AMD EPYC (AVX512)") == ([900.0], [], True)
    assert study.wall_times(dirs, "AMD EPYC (AVX2)") == ([2700.0, 900.0], [], False)
    # one label, two speeds: records that name the CPU's family and model are matched on them
    (tmp_path / "zen3").mkdir()
    (tmp_path / "zen3" / "sweep.json").write_text(json.dumps(
        {**records["here"], "wall_s": 1500.0, "cpu_id": "family 25 model 17"}))
    (tmp_path / "zen3" / "eval.json").write_text("{}")
    dirs.append(tmp_path / "zen3")
    assert study.wall_times(dirs, "AMD EPYC (AVX512) family 25 model 17") == ([1500.0], [], True)
    assert study.wall_times(dirs, "AMD EPYC (AVX512)") == ([900.0], [], True)
    group = study.GroupTimes("simclr", left=4, quiet=[900.0], here=True)
    assert study.remaining_text([group], total=6, jobs=2, minutes_per_run=None) == (
        "4 of 6 runs remain; about 0.5 h with --jobs 2 (simclr 15 min per run: median of 1 "
        "finished run on this machine)")


def test_estimate_uses_each_methods_finished_runs_wall_times():
    simclr = study.GroupTimes("simclr", left=10, quiet=[1500.0, 1800.0, 2100.0])
    text = study.remaining_text([simclr], total=12, jobs=2, minutes_per_run=5)
    assert text == (
        "10 of 12 runs remain; about 2.5 h with --jobs 2 (simclr 30 min per run: median of 3 "
        "finished runs)"
    )
    assert (
        study.remaining_text([study.GroupTimes("byol", left=3)], total=3, jobs=1,
                             minutes_per_run=None)
        == "3 of 3 runs remain; no estimate until one has finished"
    )


def test_a_method_without_quiet_runs_takes_its_loaded_runs_then_the_others():
    groups = [study.GroupTimes("simclr", left=2, quiet=[1800.0], loaded=[6000.0]),
              study.GroupTimes("byol", left=2, loaded=[3600.0, 4800.0]),  # slower: not simclr's
              study.GroupTimes("mocov2", left=2)]
    text = study.remaining_text(groups, total=8, jobs=2, minutes_per_run=5)
    assert text == (
        "6 of 8 runs remain; about 2.2 h with --jobs 2 (simclr 30 min per run: median of 1 "
        "finished run; byol 70 min per run: median of 2 loaded runs, an over-estimate; mocov2 30 "
        "min per run: median of the other methods' finished runs)"
    )  # (2 × 30 + 2 × 70 + 2 × 30) / 2 jobs = 130 min
    done = study.GroupTimes("byol", left=0, quiet=[60.0])
    assert study.remaining_text([done], total=1, jobs=2, minutes_per_run=None) == (
        "0 of 1 runs remain: nothing to run")


def test_a_figure_stated_for_a_method_beats_the_other_methods_runs():
    # MoCo-v2 ran 2.5x slower per step than SimCLR on the study's CPU: borrowing SimCLR's median
    # let `--hours` start MoCo-v2 runs that could not finish (docs/results.md)
    groups = [study.GroupTimes("simclr", left=2, quiet=[1800.0, 1900.0]),
              study.GroupTimes("mocov2", left=2), study.GroupTimes("barlow", left=2)]
    text = study.remaining_text(groups, total=8, jobs=2, minutes_per_run={"mocov2": 80.0})
    assert text == (
        "6 of 8 runs remain; about 2.4 h with --jobs 2 (simclr 31 min per run: median of 2 "
        "finished runs; mocov2 80 min per run: the grid's minutes_per_run.mocov2, until its runs "
        "finish here; barlow 31 min per run: median of the other methods' finished runs)"
    )  # (2 × 31.25 + 2 × 80 + 2 × 31.25) / 2 jobs = 142.5 min = 2.4 h
    finished = study.GroupTimes("mocov2", left=1, quiet=[4200.0])  # its own runs win
    assert study.per_run_minutes([finished], {"mocov2": 80.0})["mocov2"] == (
        70.0, "median of 1 finished run")
    # a table names methods only: one without a figure and without runs has none
    assert study.remaining_text([study.GroupTimes("byol", left=1)], total=1, jobs=1,
                                minutes_per_run={"mocov2": 80.0}) == (
        "1 of 1 runs remain; no estimate until one has finished")


def test_outside_git_or_ignored_nothing_is_committed_and_the_sweep_says_so(tmp_path, repo):
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "config.json").write_text("{}")
    assert "not inside a git work tree" in study.commit_run(loose, message="x")
    (repo / ".gitignore").write_text("runs/\n")
    ignored = repo / "runs" / "r"
    ignored.mkdir(parents=True)
    (ignored / "config.json").write_text("{}")
    assert "is ignored by git" in study.commit_run(ignored, message="x")
    assert _git(repo, "status", "--porcelain", "runs") == ""
