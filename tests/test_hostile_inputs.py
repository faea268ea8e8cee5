"""Hostile sizes, caches and faults: size-like keys and totals bounded at the config boundary,
damaged caches rebuilt (never fatal, never run), a full disk during export or a checkpoint
leaves nothing half-written, a broken test split stops a run before it trains. One line each.
"""

from __future__ import annotations

import errno
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from hostile_kit import Payload, cli, run_copy, short, snapshot
from synccp.config import ConfigError, load_config

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]

SIZES = {
    "seed beyond 64 bits": ({"train.seed": 2**64}, "train.seed"),
    "negative seed": ({"train.seed": -1}, "train.seed"),
    "width 1e6": ({"model.width": 10**6}, "model.width"),
    "image size 1e6": ({"data.image_size": 10**6}, "data.image_size"),
    "queue 1e9": ({"method.name": '"mocov2"', "method.queue_size": 10**9}, "method.queue_size"),
    "projector 1e7": ({"method.proj_hidden_dim": 10**7}, "method.proj_hidden_dim"),
    "projector output 0": ({"method.proj_output_dim": 0}, "method.proj_output_dim"),
    "predictor -1": ({"method.pred_hidden_dim": -1}, "method.pred_hidden_dim"),
    "batch 1e8": ({"train.batch_size": 10**8}, "train.batch_size"),
    "epochs 1e15": ({"train.epochs": 1e15}, "train.epochs"),
    "15M steps": ({"train.epochs": 2000, "train.batch_size": 2}, "optimizer steps"),
    "rigl 290k updates": (
        {"sparsity.algorithm": '"rigl"', "sparsity.update_every": 1, "train.epochs": 5000},
        "sparsity.update_every=1 makes up to",
    ),
    "linear probe 1e9 epochs": ({"eval.linear_epochs": 10**9}, "eval.linear_epochs"),
    "knn k 1e9": ({"eval.knn_k": 10**9}, "eval.knn_k"),
    "N:M with m 1e6": ({"sparsity.m": 10**6}, "sparsity.m"),
    "block 1e5": ({"sparsity.block_out": 10**5}, "sparsity.block_out"),
    "subset 1e12": ({"data.subset": 10**12}, "data.subset"),
}


@pytest.mark.parametrize("case", sorted(SIZES))
def test_size_like_keys_are_bounded(hostile, case):
    values, words = SIZES[case]
    started = time.perf_counter()
    try:
        load_config(None, [f"{k}={v}" for k, v in values.items()])
        got = "loaded"
    except ConfigError as err:
        got = f"ConfigError: {err}"
    hostile(
        f"ConfigError naming {words}, at once", f"{got} ({time.perf_counter() - started:.2f} s)"
    )
    assert got.startswith("ConfigError") and words in got


def test_cost_of_a_huge_config_exits_2_at_once(tmp_path, capsys, hostile):
    path = tmp_path / "huge.toml"
    path.write_text("[train]\nepochs = 1e15\n")
    started = time.perf_counter()
    code, text = cli(capsys, "cost", path)
    seconds = time.perf_counter() - started
    hostile(
        "exit 2 naming train.epochs in well under a second",
        f"{short(code, text)} ({seconds:.2f} s)",
    )
    assert code == 2 and "train.epochs" in text and seconds < 5


def test_largest_allowed_values_still_load(hostile):
    cfg = load_config(
        None, ["train.seed=4294967295", "model.width=256", "method.proj_hidden_dim=16384"]
    )
    hostile("the limits themselves are accepted", f"seed {cfg.train.seed}, width {cfg.model.width}")
    assert cfg.train.seed == 2**32 - 1


# ------------------------------------------------------------------ caches
@pytest.fixture
def evaluated(finished_template, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    run = run_copy(finished_template, tmp_path)
    return run, tmp_path / "cache" / "raw_baseline"


@pytest.mark.parametrize(
    "poison",
    [
        b'{"knn_top1": 8',
        b"[1, 2]",
        b'{"knn_top1": 500, "linear_top1": -3}',
        b'{"knn_top1": true, "linear_top1": true}',
    ],
    ids=["torn", "a list", "out of range", "booleans"],
)
def test_a_damaged_raw_baseline_cache_is_recomputed(evaluated, capsys, hostile, poison):
    run, cache = evaluated
    assert cli(capsys, "eval", run)[0] == 0
    (entry,) = cache.iterdir()
    good = json.loads(entry.read_text())
    entry.write_bytes(poison)
    code, text = cli(capsys, "eval", run)
    repaired = json.loads(entry.read_text())
    hostile(
        "exit 0, cache rewritten with the real result",
        f"{short(code, text, 6)}; repaired={repaired == good}",
    )
    assert code == 0 and repaired == good


def _image_folder(root):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                    folder / f"{i}.png"
                )
    return root


IMAGE_CACHE_POISON = {
    "not a dict": lambda state, marker: [1, 2],
    "float images": lambda state, marker: {**state, "images": state["images"].float()},
    "too many labels": lambda state, marker: {
        **state,
        "labels": torch.zeros(99, dtype=torch.int64),
    },
    "label out of range": lambda state, marker: {**state, "labels": state["labels"] + 50},
    "mean of wrong length": lambda state, marker: {**state, "mean": [0.5]},
    "code payload": lambda state, marker: {
        **state,
        "x": Payload(__import__("os").system, f"touch {marker}"),
    },
}


@pytest.mark.parametrize("case", sorted(IMAGE_CACHE_POISON))
def test_a_poisoned_image_folder_cache_is_rebuilt(tmp_path, monkeypatch, caplog, hostile, case):
    from synccp.data.image_folder import load_image_folder

    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    root = _image_folder(tmp_path / "images")
    clean = load_image_folder("train", root=str(root), image_size=8)
    (entry,) = (tmp_path / "cache" / "image_folder").glob("*.pt")
    marker = tmp_path / "owned"
    state = torch.load(entry, weights_only=True)
    torch.save(IMAGE_CACHE_POISON[case](state, marker), entry)
    again = load_image_folder("train", root=str(root), image_size=8)
    warned = [
        r.getMessage()
        for r in caplog.records
        if "cache" in r.getMessage() and "ignoring" in r.getMessage()
    ]
    same = torch.equal(again.images, clean.images) and torch.equal(again.labels, clean.labels)
    hostile(
        "warning naming the cache, images decoded again, no code run",
        f"{warned[0][:90] if warned else 'no warning'}; same={same}",
    )
    assert warned and same and not marker.exists()


# ------------------------------------------------------------------ a full disk
def _full_disk(monkeypatch, module, name_part):
    real = module.save_file

    def save_file(tensors, path, *args, **kwargs):
        if name_part in str(path):
            with open(path, "wb") as handle:
                handle.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(module, "save_file", save_file)


@pytest.mark.parametrize("which", ["model", "masks"])
def test_a_full_disk_during_export_leaves_no_export(
    finished_template, tmp_path, capsys, monkeypatch, hostile, which
):
    import synccp.rundir.artifacts as export

    run = run_copy(finished_template, tmp_path, interrupted=True)
    _full_disk(monkeypatch, export, f".{which}.safetensors.")
    code, text = cli(capsys, "pretrain", "--no-eval", "--out", run, "--resume")
    left = sorted(
        p.name for p in run.iterdir() if "safetensors" in p.name or p.name.endswith(".tmp")
    )
    hostile(
        f"exit 2 naming {which}.safetensors; no model, masks or temporary left",
        f"{short(code, text)}; left={left}",
    )
    assert (
        code == 2 and f"cannot write {run / which}.safetensors" in text and "No space left" in text
    )
    assert left == [] and not (run / "summary.json").exists()


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch, hostile):
    from synccp.rundir import checkpoint

    checkpoint.save_checkpoint(tmp_path, {"step": 1, "w": torch.ones(3)})
    before = snapshot(tmp_path)

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    try:
        checkpoint.save_checkpoint(tmp_path, {"step": 2, "w": torch.ones(3)})
        got = "written"
    except OSError as err:
        got = f"OSError: {err}"
    hostile("OSError naming last.pt.new; last.pt intact, no temporary", got)
    assert got.startswith("OSError: [Errno 5] cannot write") and "last.pt.new" in got
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ a broken test split
def test_a_broken_test_split_stops_the_run_before_training(
    finished_template, tmp_path, capsys, monkeypatch, hostile
):
    import shutil

    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    shutil.copytree(
        json.loads((finished_template / "config.json").read_text())["data"]["root"], root
    )
    test_images = root / "t10k-images-idx3-ubyte.gz"
    test_images.write_bytes(test_images.read_bytes()[:100])
    from helpers import tiny_overrides

    started = time.perf_counter()
    code, text = cli(
        capsys,
        "pretrain",
        "--out",
        tmp_path / "r",
        *[a for s in tiny_overrides(root) for a in ("--set", s)],
    )
    hostile(
        "exit 2 naming the t10k file before training; no run directory",
        f"{short(code, text)} ({time.perf_counter() - started:.1f} s)",
    )
    assert code == 2 and "t10k-images-idx3-ubyte.gz" in text and not (tmp_path / "r").exists()
