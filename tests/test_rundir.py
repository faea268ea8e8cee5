"""Run-dir safety: atomic writes, metrics truncation, checkpoint fallback, other runs refused."""

import json

import pytest
import torch

from synccp.rundir import MetricsLog, RunDirError, atomic_write, prepare_run_dir, read_metrics
from synccp.rundir.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_metrics_truncate_after_resume_point_and_ignore_torn_line(tmp_path):
    log = MetricsLog(tmp_path)
    for step in range(5):
        log.write({"kind": "train", "step": step})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "tra')  # torn by a kill
    assert len(read_metrics(tmp_path)) == 5
    log.truncate_after(2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [0, 1, 2]


def test_checkpoint_falls_back_to_previous_when_last_is_corrupt(tmp_path):
    save_checkpoint(tmp_path, {"step": 1, "x": torch.ones(2)})
    save_checkpoint(tmp_path, {"step": 2, "x": torch.ones(2)})
    assert load_checkpoint(tmp_path)["step"] == 2
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"garbage")
    assert load_checkpoint(tmp_path)["step"] == 1
    (tmp_path / "checkpoints" / "prev.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="last.pt"):
        load_checkpoint(tmp_path)


def test_run_dir_refuses_a_different_run_and_keeps_it(tmp_path):
    prepare_run_dir(tmp_path / "r", {"train": {"epochs": 1}}, resume=False)
    with pytest.raises(RunDirError, match="train.epochs"):
        prepare_run_dir(tmp_path / "r", {"train": {"epochs": 2}}, resume=False)
    with pytest.raises(RunDirError, match="--resume"):
        prepare_run_dir(tmp_path / "r", {"train": {"epochs": 1}}, resume=False)
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {"train": {"epochs": 1}}
    with pytest.raises(RunDirError, match="holds no run"):
        prepare_run_dir(tmp_path / "other", {}, resume=True)
