"""Hostile checkpoints through `synccp pretrain --resume`: no code runs from a checkpoint, a
checkpoint that cannot prove it is intact and this run's (checksum, identity, structure) is
skipped with a warning naming it for prev.pt, and with none left the command exits 2 naming
every file and touching nothing. Each case prints one line of the hostile table (conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from hostile_kit import flip_tensor_byte, payload_file, resign, resume, run_copy, short, snapshot
from synccp.rundir.checkpoint import content_checksum, load_checkpoint, save_checkpoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


def _set(key, value):
    return lambda payload: payload["state"].__setitem__(key, value)


def _drop(key):
    return lambda payload: payload["state"].pop(key)


# (case, how last.pt / prev.pt are damaged, the refusal reason the warning must carry)
DAMAGE = {
    "payload os.system": (lambda p, m: payload_file(p, m, "os.system"), "unsafe"),
    "payload builtins.exec": (lambda p, m: payload_file(p, m, "builtins.exec"), "unsafe"),
    "payload bare pickle posix.system": (lambda p, m: payload_file(p, m, "bare"), "unsafe"),
    "flipped tensor byte": (lambda p, m: flip_tensor_byte(p), "does not match its checksum"),
    "foreign run": (
        lambda p, m: resign(p, lambda d: d.__setitem__("identity", "0" * 64)),
        "another run",
    ),
    "missing optimizer": (lambda p, m: resign(p, _drop("optimizer")), "lacks 'optimizer'"),
    "missing sparsifier": (lambda p, m: resign(p, _drop("sparsifier")), "lacks 'sparsifier'"),
    "missing generators": (lambda p, m: resign(p, _drop("generators")), "lacks 'generators'"),
    "step is a string": (lambda p, m: resign(p, _set("step", "12")), "lacks 'step'"),
    "negative step": (lambda p, m: resign(p, _set("step", -3)), "its step is -3"),
    "checksum removed": (lambda p, m: resign(p, lambda d: d.pop("checksum")), "checksum"),
    "unknown format": (
        lambda p, m: resign(p, lambda d: d.__setitem__("synccp_checkpoint", 3)),
        "format 3",
    ),
    "older bare state": (
        lambda p, m: torch.save(torch.load(p, weights_only=True)["state"], p),
        "older synccp",
    ),
    "payload is a list": (lambda p, m: torch.save([1, 2, 3], p), "not a synccp checkpoint"),
    "numpy array inside": (
        lambda p, m: resign(p, _set("extra", __import__("numpy").zeros(3))),
        "unsafe",
    ),
    "truncated": (
        lambda p, m: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        "unreadable",
    ),
    "empty file": (lambda p, m: p.write_bytes(b""), "unreadable"),
    "random bytes": (lambda p, m: p.write_bytes(bytes(range(256)) * 40), "unreadable"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_last_falls_back_to_prev_naming_it(
    finished_template, tmp_path, capsys, caplog, hostile, case
):
    run = run_copy(finished_template, tmp_path, interrupted=True)
    damage, reason = DAMAGE[case]
    marker = tmp_path / "owned"
    damage(run / "checkpoints" / "last.pt", marker)
    code, text = resume(capsys, run)
    warned = [r.getMessage() for r in caplog.records if "last.pt is refused" in r.getMessage()]
    hostile(
        "exit 0 from prev.pt, warning names last.pt, same model, no code run",
        short(code, warned[0] if warned else text),
    )
    assert code == 0 and warned and reason in warned[0], (code, text, warned)
    assert not marker.exists()
    assert (run / "model.safetensors").read_bytes() == (
        finished_template / "model.safetensors"
    ).read_bytes()


@pytest.mark.parametrize(
    "case",
    [
        "payload os.system",
        "flipped tensor byte",
        "foreign run",
        "missing optimizer",
        "older bare state",
        "truncated",
    ],
)
def test_both_damaged_exit_2_naming_both_and_touching_nothing(
    finished_template, tmp_path, capsys, hostile, case
):
    run = run_copy(finished_template, tmp_path, interrupted=True)
    damage, reason = DAMAGE[case]
    marker = tmp_path / "owned"
    for name in ("last.pt", "prev.pt"):
        damage(run / "checkpoints" / name, marker)
    before = snapshot(run)
    code, text = resume(capsys, run)
    hostile("exit 2 naming last.pt and prev.pt, nothing touched", short(code, text, 30))
    assert code == 2 and "cannot resume" in text and "last.pt" in text and "prev.pt" in text, text
    assert reason in text and not marker.exists() and snapshot(run) == before


def test_payload_in_pending_checkpoint_is_refused(
    finished_template, tmp_path, capsys, caplog, hostile
):
    run = run_copy(finished_template, tmp_path, interrupted=True)
    marker = tmp_path / "owned"
    payload_file(run / "checkpoints" / "last.pt.new", marker)
    code, text = resume(capsys, run)
    warned = [r.getMessage() for r in caplog.records if "last.pt.new is refused" in r.getMessage()]
    hostile(
        "exit 0 from last.pt, warning names last.pt.new, no code run",
        short(code, warned[0] if warned else text),
    )
    assert code == 0 and warned and not marker.exists()


def test_checkpoint_that_is_a_directory_exits_2_before_training(
    finished_template, tmp_path, capsys, hostile
):
    run = run_copy(finished_template, tmp_path, interrupted=True)
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "last.pt").mkdir()
    before = snapshot(run)
    code, text = resume(capsys, run)
    hostile("exit 2 naming last.pt (not a file), nothing touched", short(code, text))
    assert code == 2 and "last.pt is not a file" in text and snapshot(run) == before


def test_verified_checkpoint_beyond_the_run_exits_2(finished_template, tmp_path, capsys, hostile):
    run = run_copy(finished_template, tmp_path, interrupted=True)
    resign(run / "checkpoints" / "last.pt", _set("step", 10_000))
    code, text = resume(capsys, run)
    hostile("exit 2 naming last.pt and the step", short(code, text))
    assert code == 2 and "last.pt is at step 10000" in text


def test_intact_checkpoints_resume_exactly(finished_template, tmp_path, capsys, hostile):
    run = run_copy(finished_template, tmp_path, interrupted=True)
    (run / "checkpoints" / "last.pt").unlink()  # resume from prev.pt: redo the last epoch
    code, text = resume(capsys, run)
    same = (run / "model.safetensors").read_bytes() == (
        finished_template / "model.safetensors"
    ).read_bytes()
    hostile(
        "exit 0, model byte-identical to the uninterrupted run",
        f"{short(code, text, 6)}; identical={same}",
    )
    assert code == 0 and same


def test_checksum_covers_every_byte_and_key(hostile):
    state = {
        "step": 3,
        "w": torch.arange(6, dtype=torch.bfloat16),
        "m": torch.ones(2, dtype=torch.bool),
        "opt": {0: {"buf": torch.zeros(2)}, "groups": [{"lr": 0.1, "nesterov": False}]},
    }
    base = content_checksum(state)
    variants = {
        "byte": {**state, "w": state["w"].clone().index_fill_(0, torch.tensor([2]), 7)},
        "dtype": {**state, "w": state["w"].float()},
        "key": {**state, "x": None},
        "shape": {**state, "m": state["m"].reshape(2, 1)},
        "value": {
            **state,
            "opt": {**state["opt"], "groups": [{"lr": 0.1000001, "nesterov": False}]},
        },
    }
    changed = {name: content_checksum(v) != base for name, v in variants.items()}
    hostile("checksum changes with every byte, dtype, key, shape, value", changed)
    assert all(changed.values()) and content_checksum(dict(reversed(list(state.items())))) == base


def test_library_load_refuses_a_foreign_identity(tmp_path, hostile):
    save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(2)}, identity="a" * 64)
    try:
        load_checkpoint(tmp_path, identity="b" * 64)
        got = "loaded"
    except Exception as err:  # noqa: BLE001 - the case records what it got
        got = f"{type(err).__name__}: {err}"
    hostile("CheckpointError: belongs to another run", got)
    assert got.startswith("CheckpointError") and "another run" in got
    assert load_checkpoint(tmp_path, identity="a" * 64)["step"] == 1
