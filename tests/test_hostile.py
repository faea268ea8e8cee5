"""Hostile input through the CLI: each case exits with code 2 and a message naming the
field, file or value, and loses nothing (no directory created, an existing run untouched).
Numerical faults: a diverging run stops with code 3 naming the step and the last good
checkpoint; nothing is overwritten with bad weights. Property-based tests (hypothesis) for
config parsing and the mask functions that the example-based tests in tests/test_config.py and
tests/sparsity do not cover.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import tiny_overrides
from synccp.cli import main
from synccp.config import (
    CHOICES,
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
)
from synccp.rundir import read_metrics
from synccp.rundir.checkpoint import (
    NonFiniteStateError,
    first_nonfinite,
    load_checkpoint,
    save_checkpoint,
)
from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.granularity import pattern_for
from synccp.sparsity.oscillation import oscillation
from synccp.sparsity.schedule import branch_densities, ramp_epochs
from synccp.sparsity.topk import keep_top

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]
QUICK = {"train.epochs": 1, "sparsity.end_epoch": 1}


def _args(out, root, **extra):
    return ["pretrain", "--no-eval", "--out", str(out)] + [
        a for o in tiny_overrides(root, **{**QUICK, **extra}) for a in ("--set", o)
    ]


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def precious(fmnist_root, tmp_path):
    """A run directory holding another run (its config.json and outputs), to be left untouched."""
    run = tmp_path / "precious"
    (run / "checkpoints").mkdir(parents=True)
    config = config_to_dict(load_config(None, tiny_overrides(fmnist_root, **QUICK)))
    (run / "config.json").write_text(json.dumps(config))
    for name in ("checkpoints/last.pt", "model.safetensors", "summary.json", "metrics.jsonl"):
        (run / name).write_bytes(b"keep me " + name.encode())
    return run


# ------------------------------------------------------------------ config, through the CLI
@pytest.mark.parametrize(
    "extra, words",
    [
        ({"train.epochs": '"ten"'}, ["train.epochs", "ten"]),
        ({"sparsity.density": 1.5}, ["sparsity.density", "1.5"]),
        ({"train.momentum": -0.1}, ["train.momentum", "-0.1"]),
        ({"train.nope": 1}, ["train.nope"]),
        ({"sparsity.n": 4, "sparsity.m": 4}, ["sparsity.n", "n=4", "m=4"]),
        ({"sparsity.n": 5, "sparsity.m": 4}, ["sparsity.n", "n=5"]),
        ({"sparsity.granularity": '"diagonal"'}, ["sparsity.granularity", "diagonal"]),
    ],
    ids=[
        "wrong type",
        "out of range",
        "negative",
        "unknown key",
        "n equals m",
        "n above m",
        "bad choice",
    ],
)
def test_bad_config_values_exit_2_and_touch_nothing(
    fmnist_root, precious, capsys, hostile, extra, words
):
    before = _snapshot(precious)
    code = main(_args(precious, fmnist_root, **extra))
    err = capsys.readouterr().err
    hostile(f"exit 2 naming {', '.join(words)}, run untouched", f"exit {code}: {err}")
    assert code == 2 and all(word in err for word in words), err
    assert _snapshot(precious) == before


def test_bad_toml_files_exit_2(tmp_path, capsys):
    cases = {
        "malformed.toml": ("[train\nepochs = 3", "not valid TOML"),
        "section.toml": ("[trian]\nepochs = 3", "trian"),
        "table.toml": ("train = 3", "[train] must be a table"),
    }
    for name, (text, word) in cases.items():
        (tmp_path / name).write_text(text)
        assert (
            main(["pretrain", "--config", str(tmp_path / name), "--out", str(tmp_path / "x")]) == 2
        )
        err = capsys.readouterr().err
        assert word in err and (name in err or word != "not valid TOML"), err
    assert main(["pretrain", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err and not (tmp_path / "x").exists()


# ------------------------------------------------------ settings the data or model cannot take
@pytest.mark.parametrize(
    "extra, words",
    [
        (
            {"sparsity.granularity": '"block"', "sparsity.block_out": 3, "sparsity.block_in": 3},
            [
                "sparsity.granularity='block'",
                "fits none",
                "sparsity.block_out/sparsity.block_in",
                "3x3",
            ],
        ),
        ({"data.image_size": 4}, ["data.image_size=4", "output stride 8", ">= 8"]),
        (
            {"model.stem": '"imagenet"'},
            ["data.image_size=0 (the native 16x16", "output stride 32", "model.stem"],
        ),
        ({"train.batch_size": 1}, ["train.batch_size=1", "at least 2"]),
        ({"train.batch_size": 500}, ["train.batch_size=500", "96 training images"]),
    ],
    ids=[
        "block fits no layer",
        "image below stride",
        "imagenet stem on 16px",
        "batch of 1",
        "batch above data",
    ],
)
def test_settings_the_model_cannot_take_exit_2_before_writing(
    fmnist_root, tmp_path, capsys, hostile, extra, words
):
    code = main(_args(tmp_path / "new", fmnist_root, **extra))
    err = capsys.readouterr().err
    hostile(f"exit 2 naming {words[0]}, nothing written", f"exit {code}: {err}")
    assert code == 2 and all(word in err for word in words), err
    assert not (tmp_path / "new").exists()


def test_density_gap_beyond_a_dense_second_branch_is_refused(fmnist_root, tmp_path, capsys):
    extra = {"sparsity.algorithm": '"synccp"', "sparsity.density": 0.8, "sparsity.density_gap": 0.3}
    assert main(_args(tmp_path / "r", fmnist_root, **extra)) == 2
    err = capsys.readouterr().err
    assert "sparsity.density_gap=0.3" in err and "at most 0.2" in err
    assert not (tmp_path / "r").exists()
    extra["sparsity.density_gap"] = 0.2  # = 1 − density: a dense second branch, allowed
    assert main(_args(tmp_path / "r", fmnist_root, **extra)) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["sparsity"]["second"]["total"] == 1.0
    assert abs(summary["sparsity"]["online"]["total"] - 0.8) < 0.01


def test_partly_unfit_granularity_runs_and_lists_dense_layers(fmnist_root, tmp_path, capsys):
    extra = {
        "sparsity.granularity": '"nm"',
        "sparsity.n": 2,
        "sparsity.m": 8,
    }  # width 4: C_in=4 in layer1
    assert main(_args(tmp_path / "r", fmnist_root, **extra)) == 0
    out = capsys.readouterr().out
    assert "left dense" in out and "layer1.0.conv1.weight (C_in=4 is not divisible by M=8)" in out
    unfit = json.loads((tmp_path / "r" / "summary.json").read_text())["sparsity"]["unfit_layers"]
    assert {u["name"] for u in unfit} >= {"layer1.0.conv1.weight", "layer1.1.conv2.weight"}


# ------------------------------------------------------------------ dataset files
def _copy(fmnist_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(fmnist_root, root)
    return root


def test_broken_dataset_files_exit_2_naming_the_file(fmnist_root, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_args(tmp_path / "a", empty)) == 2
    err = capsys.readouterr().err
    assert "data.root" in err and "train-images-idx3-ubyte" in err
    truncated = _copy(fmnist_root, tmp_path / "t")
    images = truncated / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[: len(images.read_bytes()) // 2])
    assert main(_args(tmp_path / "b", truncated)) == 2
    err = capsys.readouterr().err
    assert str(images) in err and "truncated" in err
    magic = _copy(fmnist_root, tmp_path / "m")
    (magic / "train-images-idx3-ubyte.gz").unlink()
    with gzip.open(magic / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, 96) + bytes(96))  # a labels file under the images name
    assert main(_args(tmp_path / "c", magic)) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz: IDX magic number is 2049, expected 2051" in err
    assert not any((tmp_path / n).exists() for n in "abc")


def test_corrupt_image_in_an_image_folder_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for i in range(10):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png"
                )
    bad = tmp_path / "images" / "train" / "b" / "3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    args = _args(
        tmp_path / "r",
        tmp_path / "images",
        **{"data.name": '"image_folder"', "data.image_size": 16},
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "delete or replace it" in err and not (tmp_path / "r").exists()


# ------------------------------------------------------------------ run directories
def test_run_directories_that_cannot_take_the_run(fmnist_root, precious, tmp_path, capsys):
    before = _snapshot(precious)
    assert main(_args(precious, fmnist_root, **{"train.seed": 5})) == 2
    assert "already holds a different run (differs in: train.seed)" in capsys.readouterr().err
    assert main(_args(precious, fmnist_root)) == 2  # the same run, finished: needs --resume
    assert "pass --resume" in capsys.readouterr().err
    assert _snapshot(precious) == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert main(_args(stranger, fmnist_root)) == 2
    assert "holds no synccp run (it holds notes.txt)" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(_args(tmp_path / "file", fmnist_root)) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(_args(tmp_path / "nothing", fmnist_root) + ["--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert (stranger / "notes.txt").read_text() == "mine" and (tmp_path / "file").read_text() == "x"


def test_stray_temporary_of_a_killed_write_does_not_block_a_new_run(fmnist_root, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / ".config.json.k1ll3d.tmp").write_text("{")  # a kill during the first config.json write
    assert main(_args(run, fmnist_root)) == 0
    assert not (run / ".config.json.k1ll3d.tmp").exists() and (run / "model.safetensors").is_file()


# ------------------------------------------------------------------ numerical faults
def test_diverging_run_stops_naming_the_step_and_keeps_the_good_checkpoint(
    fmnist_root, tmp_path, capsys
):
    run = tmp_path / "r"
    # solo-learn's clipped LARS bounds every step by the trust ratio, so divergence needs SGD
    args = _args(
        run,
        fmnist_root,
        **{
            "train.lr": 4e7,
            "train.epochs": 3,
            "sparsity.end_epoch": 2,
            "method.name": '"simclr"',
            "train.optimizer": '"sgd"',
        },
    )
    assert main(args) == 3
    err = capsys.readouterr().err
    assert (
        "the loss is nan at step 9" in err and f"{run / 'checkpoints' / 'last.pt'}, step 6" in err
    )
    state = load_checkpoint(run)
    assert state["step"] == 6 and first_nonfinite(state) is None
    assert (
        not (run / "checkpoints" / "prev.pt").exists() and not (run / "model.safetensors").exists()
    )
    assert all(math.isfinite(r["loss"]) for r in read_metrics(run, "train"))
    kept = _snapshot(run / "checkpoints")
    assert main(args + ["--resume"]) == 3  # deterministic: diverges again, overwrites nothing
    assert "step 9" in capsys.readouterr().err and _snapshot(run / "checkpoints") == kept


def test_non_finite_state_is_never_checkpointed(tmp_path):
    good = {
        "step": 1,
        "method": {"w": torch.ones(3)},
        "generator": torch.zeros(4, dtype=torch.uint8),
    }
    save_checkpoint(tmp_path, good)
    before = _snapshot(tmp_path)
    for bad in (float("nan"), float("inf"), -float("inf")):
        state = {
            "step": 2,
            "method": {"w": torch.ones(3), "bn.running_var": torch.tensor([1.0, bad])},
            "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(2)}}},
        }
        assert first_nonfinite(state) == "method.bn.running_var"
        with pytest.raises(NonFiniteStateError, match="method.bn.running_var"):
            save_checkpoint(tmp_path, state)
    assert _snapshot(tmp_path) == before and load_checkpoint(tmp_path)["step"] == 1
    assert (
        first_nonfinite({"optimizer": {"state": {3: {"m": torch.tensor([float("nan")])}}}})
        == "optimizer.state.3.m"
    )


# ------------------------------------------------------------------ property-based: config parsing
FIELDS = {
    f"{section.name}.{field.name}": str(field.type)  # e.g. "train.lr": "float"
    for section in dataclasses.fields(Config)
    for field in dataclasses.fields(section.default_factory())
}


def _value(key: str):
    """Values a user might write for `key`: the right type (edge cases included) or a wrong one."""
    anything = st.one_of(
        st.integers(-3, 3),
        st.booleans(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["", "x", "nan", math.nan, math.inf, -math.inf]),
    )
    typed = {
        "int": st.integers(-2, 600),
        "float": st.floats(-1.0, 12.0, allow_nan=False),
        "bool": st.booleans(),
        "str": st.sampled_from(CHOICES.get(key, ("", "x"))),
    }
    kind = FIELDS[key].split(" ")[0]
    return st.one_of(typed[kind], anything) if kind in typed else anything


@st.composite
def _documents(draw):
    keys = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=6, unique=True))
    doc: dict = {}
    for key in keys:
        section, name = key.split(".")
        doc.setdefault(section, {})[name] = draw(_value(key))
    if draw(st.booleans()):
        section = draw(st.sampled_from(["train", "sparsity", "bogus"]))
        doc.setdefault(section, {})[draw(st.sampled_from(["nope", "lr_", "Density"]))] = 1
    return doc


def _toml(doc: dict) -> str:
    def literal(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return {math.inf: "inf", -math.inf: "-inf"}.get(v, "nan" if v != v else repr(v))
        return json.dumps(v) if isinstance(v, str) else repr(v)

    return "".join(
        f"[{s}]\n" + "".join(f"{k} = {literal(v)}\n" for k, v in t.items()) for s, t in doc.items()
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_documents())
def test_any_toml_document_loads_or_names_a_key_it_set(tmp_path, doc):
    path = tmp_path / "c.toml"
    path.write_text(_toml(doc))
    try:
        cfg = load_config(path)
    except ConfigError as err:
        named = [f"{s}.{k}" for s, t in doc.items() for k in t] + [f"'{s}'" for s in doc]
        assert any(key in str(err) for key in named), (str(err), doc)
        return
    assert config_from_dict(config_to_dict(cfg)) == cfg  # a resolved config is a fixed point
    values = [v for section in config_to_dict(cfg).values() for v in section.values()]
    assert all(math.isfinite(v) for v in values if isinstance(v, float))  # no NaN/Inf gets through
    s = cfg.sparsity
    assert 0 < s.density <= s.initial_density <= 1 and 1 <= s.n < s.m and 0 <= s.density_gap < 1
    start, end = ramp_epochs(
        start_epoch=s.start_epoch,
        end_epoch=s.end_epoch,
        ramp_start=s.ramp_start,
        ramp_end=s.ramp_end,
        epochs=cfg.train.epochs,
    )
    if s.algorithm in ("gmp", "granet", "synccp"):  # the ramp is checked only where it is used
        assert 0 <= start <= end <= cfg.train.epochs


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=40))
def test_any_set_override_loads_or_raises_config_error(text):
    try:
        load_config(None, [text])
    except ConfigError:
        pass


# ------------------------------------------------------------------ property-based: mask functions
_SHAPES = st.sampled_from([(8, 4, 3, 3), (4, 8, 1, 1), (8, 8), (16, 4, 3, 3), (4, 16)])
_PATTERNS = st.sampled_from(
    [
        pattern_for("unstructured"),
        pattern_for("nm", n=2, m=4),
        pattern_for("nm", n=1, m=4),
        pattern_for("block", block=(2, 2)),
        pattern_for("channel"),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    shapes=st.lists(_SHAPES, min_size=1, max_size=3),
    pattern=_PATTERNS,
    allocation=st.sampled_from(["global", "uniform", "erk"]),
    densities=st.tuples(st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.floats(0.05, 1.0)),
    seed=st.integers(0, 2**16),
)
def test_nested_allocation_keeps_forced_inside_allowed(
    shapes, pattern, allocation, densities, seed
):
    """SyncCP's nesting M_A ⊆ M_B and shrink-only updates: `forced` ⊆ result ⊆ `allowed`."""
    low, mid, high = sorted(densities)
    if pattern.granularity == "nm":
        low, mid, high = (max(d, pattern.n / pattern.m) for d in (low, mid, high))
    g = torch.Generator().manual_seed(seed)
    scores = {f"l{i}": torch.rand(s, generator=g) for i, s in enumerate(shapes)}
    allowed = allocate_masks(scores, high, allocation=allocation, pattern=pattern)
    forced = allocate_masks(scores, low, allocation=allocation, pattern=pattern, allowed=allowed)
    fresh = {k: torch.rand(s.shape, generator=g) for k, s in scores.items()}
    masks = allocate_masks(
        fresh, mid, allocation=allocation, pattern=pattern, allowed=allowed, forced=forced
    )
    for name, mask in masks.items():
        assert mask.shape == scores[name].shape and mask.dtype == torch.bool
        assert not (forced[name] & ~allowed[name]).any()
        assert not (forced[name] & ~mask).any() and not (mask & ~allowed[name]).any()


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.integers(0, 3), min_size=1, max_size=40), fraction=st.floats(0.0, 1.0))
def test_keep_top_is_exact_under_ties(values, fraction):
    scores = torch.tensor(values, dtype=torch.float32)
    count = round(fraction * len(values))
    kept = keep_top(scores, count)
    assert int(kept.sum()) == count
    if 0 < count < len(values):
        assert scores[kept].min() >= scores[~kept].max()


@settings(max_examples=80, deadline=None)
@given(a=st.lists(st.booleans(), min_size=1, max_size=30), seed=st.integers(0, 2**16))
def test_oscillation_metrics_are_consistent(a, seed):
    before = torch.tensor(a)
    after = before ^ (torch.rand(len(a), generator=torch.Generator().manual_seed(seed)) < 0.3)
    forward, backward = oscillation(before, after), oscillation(after, before)
    assert forward["iou"] == pytest.approx(backward["iou"]) and 0.0 <= forward["iou"] <= 1.0
    assert forward["hamming"] == pytest.approx(1 - int((before ^ after).sum()) / len(a))
    assert (forward["iou"] == 1.0) == bool(torch.equal(before, after) or not (before | after).any())
    assert oscillation(before, before)["flip_rate"] == 0.0


@settings(max_examples=100, deadline=None)
@given(
    algorithm=st.sampled_from(["dense", "static", "gmp", "sdclr", "rigl", "granet", "synccp"]),
    density=st.floats(0.01, 1.0),
    extra=st.floats(0.0, 1.0),
    gap=st.floats(0.0, 0.99),
    granularity=st.sampled_from(["unstructured", "nm"]),
    start=st.integers(0, 20),
    length=st.integers(0, 50),
)
def test_branch_densities_stay_in_range_and_never_grow(
    algorithm, density, extra, gap, granularity, start, length
):
    initial = density + extra * (1 - density)
    kwargs = dict(
        algorithm=algorithm,
        density=density,
        initial_density=initial,
        density_gap=gap,
        start_step=start,
        end_step=start + length,
        sparse_branch="second",
        granularity=granularity,
        n=2,
        m=4,
        update_every=3,
    )
    previous = (1.0, 1.0)
    for step in range(0, start + length + 5):
        online, second = branch_densities(step, **kwargs)
        assert 0.0 < online <= 1.0 and 0.0 < second <= 1.0
        assert online <= previous[0] + 1e-12 and second <= previous[1] + 1e-12
        if algorithm == "synccp":
            assert second == min(1.0, online + gap)  # the gap never pushes a density above 1
        previous = (online, second)
