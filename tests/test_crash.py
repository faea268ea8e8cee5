"""Crash safety with real processes: `python -m synccp pretrain` SIGKILLed at random moments
and in the middle of checkpoint writes, resumed each time, ends bit for bit where an uninterrupted
run ends; corrupt checkpoints fall back through the CLI.

The kills are real (no fault-injection hook in the library): the test watches the run directory
and sends SIGKILL either after a random delay or the moment a checkpoint write is in progress
(a temporary `.last.pt.new.*.tmp` or a `last.pt.new` waiting to be promoted is on disk).
`SYNCCP_CRASH_KILLS` raises the number of kills (docs/reliability.md used 40).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import tiny_overrides
from synccp.cli import main
from synccp.config import load_config
from synccp.rundir import read_metrics
from synccp.rundir.checkpoint import load_checkpoint, save_checkpoint
from synccp.train.loop import pretrain

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
KILLS = int(os.environ.get("SYNCCP_CRASH_KILLS", "4"))
EPOCHS = max(6, KILLS + 2)  # 6 steps and one checkpoint per epoch: room for every kill
RUN = {
    "method.name": '"byol"',
    "method.pred_hidden_dim": 16,
    "sparsity.algorithm": '"synccp"',
    "sparsity.score_ema": 0.5,
    "train.epochs": EPOCHS,
    "sparsity.end_epoch": 4.5,
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the subprocesses run with OMP_NUM_THREADS=1: same kernels, same bits
    yield
    torch.set_num_threads(before)


def _writes(run: Path) -> set[tuple[str, int]]:
    """Files of checkpoint writes in progress (or cut): temporaries and a pending last.pt.new,
    with their inodes (a new write is a new file)."""
    try:
        entries = list(os.scandir(run / "checkpoints"))
    except FileNotFoundError:
        return set()
    return {
        (e.name, e.inode()) for e in entries if e.name.endswith(".tmp") or e.name == "last.pt.new"
    }


def _launch(run: Path, sets: list[str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "synccp", "pretrain", "--no-eval", "--out", str(run)]
    argv += [a for s in sets for a in ("--set", s)]
    if (run / "config.json").exists():
        argv.append("--resume")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _kill_in_checkpoint_write(proc: subprocess.Popen, run: Path) -> None:
    """SIGKILL during the second checkpoint write this process starts (the first one completes,
    so every such launch makes progress); nothing if the process ends first. A write is seen by
    its temporary, or afterwards by the new inode of last.pt when polling missed it."""

    def inode() -> int | None:
        try:
            return (run / "checkpoints" / "last.pt").stat().st_ino
        except FileNotFoundError:
            return None

    known, last, started = _writes(run), inode(), 0
    while proc.poll() is None:
        new = {
            entry for entry in _writes(run) - known if entry[0].endswith(".tmp")
        }  # a write began
        if new:
            started += 1
            if started >= 2:
                proc.send_signal(signal.SIGKILL)
                return
            known |= new
        elif inode() != last:  # a write began and ended between two polls
            started, last = started + 1, inode()
        time.sleep(0.0002)


def _kill_after(proc: subprocess.Popen, delay: float) -> None:
    """SIGKILL `delay` seconds after the launch (start-up: imports, data, config.json, resume)."""
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)


def _kill_while_training(proc: subprocess.Popen, run: Path, delay: float) -> None:
    """SIGKILL `delay` seconds after this process logged its first training step."""
    metrics = run / "metrics.jsonl"
    size = metrics.stat().st_size if metrics.exists() else 0
    while proc.poll() is None and (not metrics.exists() or metrics.stat().st_size <= size):
        time.sleep(0.002)
    _kill_after(proc, delay)


def test_sigkill_at_random_moments_and_in_checkpoint_writes_resumes_exactly(fmnist_root, tmp_path):
    sets = tiny_overrides(fmnist_root, **RUN)
    reference = tmp_path / "reference"
    pretrain(load_config(None, sets), reference)
    run, rng = tmp_path / "killed", random.Random(6)
    outcomes = []
    for attempt in range(KILLS + 20):  # kills, then launches until the run completes
        before = _writes(run)
        proc = _launch(run, sets)
        mode = ("checkpoint write", "training", "checkpoint write", "start-up")[len(outcomes) % 4]
        if len(outcomes) < KILLS and mode == "checkpoint write":
            _kill_in_checkpoint_write(proc, run)
        elif len(outcomes) < KILLS and mode == "training":
            _kill_while_training(proc, run, rng.uniform(0.0, 0.3))
        elif len(outcomes) < KILLS:
            _kill_after(proc, rng.uniform(0.2, 2.5))
        code = proc.wait(timeout=300)
        stderr = proc.stderr.read()
        if code == 0:
            break
        assert code == -signal.SIGKILL, f"launch {attempt} failed with {code}: {stderr[-2000:]}"
        outcomes.append(
            f"{mode}: " + ("in a checkpoint write" if _writes(run) - before else "elsewhere")
        )
    else:
        pytest.fail(f"the run never completed: {outcomes}")
    print(f"{len(outcomes)} kills:", dict(collections.Counter(outcomes)))  # shown with pytest -s
    assert (
        len(outcomes) >= min(KILLS, 3) and "checkpoint write: in a checkpoint write" in outcomes
    ), outcomes
    for name in ("model.safetensors", "masks.safetensors"):
        assert (reference / name).read_bytes() == (run / name).read_bytes(), name
    want, got = load_checkpoint(reference), load_checkpoint(run)
    for part in ("method", "sparsifier"):
        assert want[part].keys() == got[part].keys()
    assert all(torch.equal(v, got["method"][k]) for k, v in want["method"].items())
    assert all(
        torch.equal(v, got["optimizer"]["state"][i][k])
        for i, s in want["optimizer"]["state"].items()
        for k, v in s.items()
    )
    train = [[(r["step"], r["loss"]) for r in read_metrics(d, "train")] for d in (reference, run)]
    assert train[0] == train[1]  # the log was cut back to each checkpoint: no duplicates, no gaps
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_corrupt_checkpoints_through_the_cli(fmnist_root, tmp_path, capsys, caplog):
    args = ["pretrain", "--no-eval", "--out", str(tmp_path / "r")]
    args += [
        a
        for s in tiny_overrides(fmnist_root, **{"train.epochs": 3, "sparsity.end_epoch": 2})
        for a in ("--set", s)
    ]
    folder = tmp_path / "r" / "checkpoints"
    assert main(args) == 0
    reference = (tmp_path / "r" / "model.safetensors").read_bytes()
    for name in (
        "summary.json",
        "model.safetensors",
        "masks.safetensors",
    ):  # as if killed before the export
        (tmp_path / "r" / name).unlink()
    (folder / "last.pt").write_bytes((folder / "last.pt").read_bytes()[:1000])  # torn
    assert main(args + ["--resume"]) == 0  # falls back to prev.pt (epoch 2) and redoes epoch 3
    assert any("last.pt is refused: unreadable" in r.getMessage() for r in caplog.records)
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == reference
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["total_steps"] == 18
    (tmp_path / "r" / "summary.json").unlink()
    for name in ("last.pt", "prev.pt"):
        (folder / name).write_bytes(b"not a checkpoint")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "last.pt" in err and "prev.pt" in err
    assert before == {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()}


def test_every_cut_of_a_checkpoint_write_leaves_the_newest_complete_checkpoint(tmp_path):
    """The on-disk states a kill can leave inside `save_checkpoint` (temporary written, pending
    renamed, last.pt moved to prev.pt), each resolved by `load_checkpoint` to the newest one."""
    folder = tmp_path / "checkpoints"
    save_checkpoint(tmp_path, {"step": 6})
    save_checkpoint(tmp_path, {"step": 12})  # last.pt = 12, prev.pt = 6
    save_checkpoint(tmp_path / "elsewhere", {"step": 18})
    (tmp_path / "elsewhere" / "checkpoints" / "last.pt").rename(folder / "pending.bin")
    torn = (folder / "pending.bin").read_bytes()[:40]
    (folder / ".last.pt.new.abc123.tmp").write_bytes(torn)  # killed while writing the temporary
    assert load_checkpoint(tmp_path)["step"] == 12
    (folder / "pending.bin").rename(
        folder / "last.pt.new"
    )  # killed after the rename to last.pt.new
    assert load_checkpoint(tmp_path)["step"] == 18
    (folder / "last.pt").rename(folder / "prev.pt")  # killed after last.pt → prev.pt
    assert load_checkpoint(tmp_path)["step"] == 18
    save_checkpoint(tmp_path, {"step": 24})  # the next write completes the cycle
    assert load_checkpoint(tmp_path)["step"] == 24 and not (folder / "last.pt.new").exists()
