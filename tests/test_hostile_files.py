"""Hostile run-directory files through `synccp eval`, `inspect` and `cost`: a file that is
missing, unreadable, not JSON / safetensors, or of the wrong shape exits 2 with a message naming
the file (and the key or line), never a traceback, and writes nothing. One table line each.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from hostile_kit import cli, run_copy, short, snapshot

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture
def run(finished_template, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    return run_copy(finished_template, tmp_path)


def _edit_json(name, edit):
    def apply(run):
        path = run / name
        path.write_text(json.dumps(edit(json.loads(path.read_text()))))

    return apply


def _write(name, data):
    def apply(run):
        (run / name).unlink()
        if data is None:
            (run / name).mkdir()
        else:
            (run / name).write_bytes(data)

    return apply


CONFIG_FAULTS = {
    "missing": (lambda run: (run / "config.json").unlink(), "does not exist"),
    "a directory": (_write("config.json", None), "config.json"),
    "invalid JSON": (_write("config.json", b'{"train": {'), "not valid JSON"),
    "not UTF-8": (_write("config.json", b'{"train": "\xff\xfe"}'), "is not UTF-8 text"),
    "a JSON list": (_write("config.json", b"[1, 2]"), "table of sections"),
    "section not a table": (
        _edit_json("config.json", lambda c: {**c, "train": 3}),
        "[train] must be a table",
    ),
    "unknown key": (
        _edit_json("config.json", lambda c: {**c, "train": {**c["train"], "nope": 1}}),
        "train.nope",
    ),
    "wrong type": (
        _edit_json("config.json", lambda c: {**c, "model": {**c["model"], "width": "4"}}),
        "model.width",
    ),
    "NaN value": (_write("config.json", b'{"train": {"lr": NaN}}'), "train.lr"),
    "nested too deeply": (_write("config.json", b"[" * 100_000), "not valid JSON"),
    "seed beyond 64 bits": (
        _edit_json("config.json", lambda c: {**c, "train": {**c["train"], "seed": 2**70}}),
        "train.seed",
    ),
}
COMMANDS = {"eval": ["eval"], "inspect": ["inspect"], "cost": ["cost"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("fault", sorted(CONFIG_FAULTS))
def test_bad_config_json_exits_2_naming_it(run, capsys, hostile, command, fault):
    damage, words = CONFIG_FAULTS[fault]
    damage(run)
    before = snapshot(run)
    code, text = cli(capsys, *COMMANDS[command], run)
    hostile("exit 2 naming config.json and the key, nothing written", short(code, text))
    assert code == 2 and "config.json" in text and words in text and "Traceback" not in text, text
    assert snapshot(run) == before


SUMMARY_FAULTS = {
    "a JSON list": b"[]",
    "invalid JSON": b'{"total_steps": ',
    "total_steps missing": b'{"steps_per_epoch": 6}',
    "total_steps a string": json.dumps({"total_steps": "12", "steps_per_epoch": 6}).encode(),
    "density out of range": json.dumps(
        {
            "total_steps": 12,
            "steps_per_epoch": 6,
            "sparsity": {"online": {"total": 3}, "second": {"total": 1}},
        }
    ).encode(),
}


@pytest.mark.parametrize("fault", sorted(SUMMARY_FAULTS))
def test_bad_summary_json_exits_2_in_cost_naming_it(run, capsys, hostile, fault):
    (run / "summary.json").write_bytes(SUMMARY_FAULTS[fault])
    (run / "cost.json").unlink(missing_ok=True)
    code, text = cli(capsys, "cost", run)
    hostile("exit 2 naming summary.json (and the key), no cost.json", short(code, text))
    assert code == 2 and "summary.json" in text and not (run / "cost.json").exists(), text


METRICS_FAULTS = {
    "a line that is a list": (b"[1, 2]\n", "line 1: expected a JSON object"),
    "step is a string": (b'{"kind": "train", "step": "x"}\n', "line 1: step must be an integer"),
    "kind missing": (b'{"step": 3}\n', "line 1: kind must be a string"),
    "torn line in the middle": (b'{"kind": "tra\n', "line 1 is not a JSON record"),
    "not UTF-8 in the middle": (b'{"kind": "\xff"}\n', "line 1 is not a JSON record"),
    "densities out of range": (
        b'{"kind": "mask_update", "step": 0, "density": {"online": {"layers": {"a": 7}}}}\n',
        "density.online.layers",
    ),
    "negative step": (b'{"kind": "train", "step": -1}\n', "line 1: step must be"),
}


@pytest.mark.parametrize("fault", sorted(METRICS_FAULTS))
@pytest.mark.parametrize("command", ["cost", "report"])
def test_bad_metrics_line_exits_2_naming_file_and_line(
    run, tmp_path, capsys, hostile, command, fault
):
    line, words = METRICS_FAULTS[fault]
    metrics = run / "metrics.jsonl"
    metrics.write_bytes(line + metrics.read_bytes())
    args = ["cost", run] if command == "cost" else ["report", run, "--out", tmp_path / "report"]
    code, text = cli(capsys, *args)
    hostile("exit 2 naming metrics.jsonl and the line", short(code, text))
    assert code == 2 and "metrics.jsonl" in text and words in text, text


def test_torn_last_metrics_line_is_ignored(run, capsys, hostile):
    with open(run / "metrics.jsonl", "ab") as handle:
        handle.write(b'{"kind": "mask_upd')  # a kill during an append
    code, text = cli(capsys, "cost", run)
    hostile("exit 0: a torn last line is a killed append, ignored", short(code, text, 8))
    assert code == 0


def _tensors(path, tensors):
    path.unlink()
    save_file(tensors, str(path))


MODEL_FAULTS = {
    "garbage": (
        _write("model.safetensors", b"\x00" * 7 + b"garbage"),
        "not a readable safetensors file",
    ),
    "empty": (_write("model.safetensors", b""), "not a readable safetensors file"),
    "huge header length": (
        _write("model.safetensors", (2**62).to_bytes(8, "little") + b"{}"),
        "safetensors",
    ),
    "a directory": (_write("model.safetensors", None), "is a directory"),
    "the masks file": (
        lambda run: (run / "model.safetensors").write_bytes(
            (run / "masks.safetensors").read_bytes()
        ),
        "does not hold this run's model",
    ),
    "no tensors": (
        lambda run: _tensors(run / "model.safetensors", {}),
        "does not hold this run's model",
    ),
    "one tensor reshaped": (
        lambda run: _reshape(run / "model.safetensors"),
        "this run's model needs",
    ),
    "one tensor as int64": (
        lambda run: _retype(run / "model.safetensors"),
        "this run's model needs",
    ),
}


def _reshape(path):
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.dim() == 4)
    tensors[key] = tensors[key].reshape(-1)
    _tensors(path, tensors)


def _retype(path):
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key] = tensors[key].long()
    _tensors(path, tensors)


@pytest.mark.parametrize("fault", sorted(MODEL_FAULTS))
def test_bad_model_file_exits_2_in_eval_naming_it(run, capsys, hostile, fault):
    damage, words = MODEL_FAULTS[fault]
    damage(run)
    before = snapshot(run)
    code, text = cli(capsys, "eval", run)
    hostile("exit 2 naming model.safetensors (and the key), eval.json kept", short(code, text))
    assert code == 2 and "model.safetensors" in text and words in text, text
    assert snapshot(run) == before


def _masks(edit):
    def apply(run):
        from safetensors.torch import load_file

        path = run / "masks.safetensors"
        _tensors(path, edit(load_file(str(path))))

    return apply


def _first(masks, prefix):
    return next(k for k in masks if k.startswith(prefix))


MASK_FAULTS = {
    "garbage": (
        _write("masks.safetensors", b"\x08" + b"\x00" * 7 + b"not json"),
        "not a readable safetensors",
    ),
    "a directory": (_write("masks.safetensors", None), "is a directory"),
    "foreign keys": (
        lambda run: (run / "masks.safetensors").write_bytes(
            (run / "model.safetensors").read_bytes()
        ),
        "is not online/<layer>",
    ),
    "float masks": (_masks(lambda m: {k: v.float() for k, v in m.items()}), "masks are bool"),
    "second branch missing": (
        _masks(lambda m: {k: v for k, v in m.items() if k.startswith("online/")}),
        "no matching mask",
    ),
    "branch shapes differ": (
        _masks(lambda m: {**m, _first(m, "second/"): m[_first(m, "second/")].reshape(-1)}),
        "no matching mask of the same shape",
    ),
    "no masks": (_masks(lambda m: {}), "holds no masks"),
}


@pytest.mark.parametrize("command", ["inspect", "cost"])
@pytest.mark.parametrize("fault", sorted(MASK_FAULTS))
def test_bad_masks_file_exits_2_naming_it(run, capsys, hostile, command, fault):
    damage, words = MASK_FAULTS[fault]
    damage(run)
    (run / "cost.json").unlink(missing_ok=True)
    code, text = cli(capsys, command, run)
    hostile("exit 2 naming masks.safetensors and the key", short(code, text))
    assert code == 2 and "masks.safetensors" in text and words in text, text
    assert not (run / "cost.json").exists()


def test_masks_of_another_shape_exit_2_in_cost(run, capsys, hostile):
    def edit(masks):
        online, second = (
            _first(masks, "online/"),
            "second/" + _first(masks, "online/").split("/", 1)[1],
        )
        return {
            **masks,
            online: torch.ones(3, 3, dtype=torch.bool),
            second: torch.ones(3, 3, dtype=torch.bool),
        }

    _masks(edit)(run)
    code, text = cli(capsys, "cost", run)
    hostile("exit 2 naming masks.safetensors, the key and both shapes", short(code, text))
    assert code == 2 and "masks.safetensors" in text and "(3, 3), this run's layer" in text, text


def test_unreadable_file_is_reported_as_unreadable_not_missing(run, capsys, monkeypatch, hostile):
    import pathlib

    real = pathlib.Path.read_bytes

    def denied(self):
        if self.name == "model.safetensors":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", denied)
    code, text = cli(capsys, "eval", run)
    hostile(
        "exit 2: model.safetensors exists but cannot be read (Permission denied)", short(code, text)
    )
    assert (
        code == 2 and "cannot be read: Permission denied" in text and "does not exist" not in text
    )
