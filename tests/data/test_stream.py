"""Streamed image folders on generated folders of real JPEG/PNG files: the index and its cache,
batches identical to the in-memory path (order, ranks, resume), corrupt files by name, the
ImageNet / ImageNet-100 layouts, the subset key, and a streamed run that resumes exactly."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from helpers import tiny_overrides, write_image_folder
from synccp.config import load_config
from synccp.data import DatasetError, index, load_dataset
from synccp.data.imagenet import IMAGENET100_CLASSES
from synccp.data.stream import evenly_spaced, load_stream
from synccp.train.setup import build_setup

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))


def _cfg(root, **extra):
    values = {"data.name": '"image_folder"', "data.stream": "true", "data.workers": 0,
              "data.image_size": 16, "train.batch_size": 8, "method.name": '"simclr"',
              "sparsity.algorithm": '"synccp"', **extra}
    return load_config(None, tiny_overrides(root, **values))


def test_index_lists_once_caches_and_rebuilds_when_a_class_directory_changes(tmp_path, monkeypatch):
    paths = write_image_folder(tmp_path / "f", CLASSES, per_class=5)
    write_image_folder(tmp_path / "f", CLASSES[:2], per_class=2, split="test")
    data = load_stream("image_folder", "train", root=str(tmp_path / "f"), image_size=12)
    assert len(data) == 15 and data.num_classes == 3 and data.index.classes == tuple(CLASSES)
    assert [data.index.path(i) for i in range(15)] == paths
    assert data.index.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert len(load_stream("image_folder", "test", root=str(tmp_path / "f"))) == 4
    assert len(list((tmp_path / "cache" / "image_index").glob("*.npz"))) == 2
    monkeypatch.setattr(index, "_list", lambda *a: pytest.fail("listed again despite the cache"))
    again = load_stream("image_folder", "train", root=str(tmp_path / "f"), image_size=12)
    assert [again.index.path(i) for i in range(15)] == paths
    monkeypatch.undo()
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    write_image_folder(tmp_path / "f", ["bee"], per_class=7, seed=1)  # 2 more files in bee/
    assert len(load_stream("image_folder", "train", root=str(tmp_path / "f"))) == 17


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_in_memory_batches_across_epochs_ranks_and_restarts(
    tmp_path, workers
):
    root = tmp_path / "png"
    write_image_folder(root, CLASSES, per_class=8, ext=".png", size=(23, 17))
    memory = build_setup(_cfg(root, **{"data.stream": "false"}), torch.device("cpu"))
    stream = build_setup(_cfg(root, **{"data.workers": workers}), torch.device("cpu"))
    assert stream.batches.images is None and stream.num_images == memory.num_images == 24
    assert stream.data.mean == memory.data.mean and stream.data.std == memory.data.std
    steps = [0, 1, 2, 3, 4, 5, 2, 3, 7]  # 3 steps per epoch; a restart at step 2, a jump to 7
    for step in steps:
        batch = stream.batches.batch(step)
        assert batch.dtype == torch.uint8 and batch.shape == (8, 3, 16, 16)
        assert torch.equal(batch, memory.batches.batch(step)), step
    for rank in range(2):  # rank r's share of the global batch, as ViewStream.batch slices it
        for setup in (memory, stream):
            setup.batches.rank, setup.batches.world_size = rank, 2
        stream.batches.stream = build_setup(_cfg(root), torch.device("cpu")).batches.stream
        stream.batches.stream.sampler_args.update(take=4, offset=4 * rank)
        assert torch.equal(stream.batches.batch(4), memory.batches.batch(4))


def test_corrupt_jpegs_fail_by_name_or_are_skipped_by_name(tmp_path, caplog):
    bad = ["bee/0001.JPEG", "cat/0003.JPEG"]
    write_image_folder(tmp_path / "j", CLASSES, per_class=8, corrupt=bad)
    with pytest.raises(
        DatasetError, match=r"bee/0001\.JPEG.*cannot decode.*data.on_corrupt='skip'"
    ):
        load_stream("image_folder", "train", root=str(tmp_path / "j"))  # mean/std sample decodes it
    stats = load_stream("image_folder", "train", root=str(tmp_path / "j"), on_corrupt="skip")
    failing = build_setup(
        _cfg(tmp_path / "j", **{"data.workers": 1}),
        torch.device("cpu"),
        data=replace(stats, on_corrupt="error"),
    )
    with pytest.raises(
        DatasetError, match=r"^\S+/(bee/0001|cat/0003)\.JPEG: cannot decode.*on_corrupt='skip'$"
    ):
        for step in range(3):  # in a DataLoader worker, re-raised in the training process
            failing.batches.batch(step)
    skipping = build_setup(
        _cfg(tmp_path / "j", **{"data.workers": 1, "data.on_corrupt": '"skip"'}),
        torch.device("cpu"),
    )
    with caplog.at_level(logging.WARNING, logger="synccp.data.loader"):
        batches = [
            skipping.batches.batch(step) for step in range(3)
        ]  # one whole epoch: every file seen
    assert all(b.shape == (8, 3, 16, 16) for b in batches)
    assert sorted(skipping.batches.stream.skipped) == sorted(
        str(tmp_path / "j" / "train" / p) for p in bad
    )
    warned = [
        r.getMessage() for r in caplog.records if "skipped unreadable image" in r.getMessage()
    ]
    assert len(warned) == 2 and all(any(p in w for w in warned) for p in bad)
    with pytest.raises(DatasetError, match="data.on_corrupt must be one of error, skip"):
        load_stream("image_folder", "train", root=str(tmp_path / "j"), on_corrupt="ignore")
    assert len(stats) == 24  # the index lists files; decoding finds the corrupt ones


def test_imagenet_layout_val_split_and_subset_spread_over_classes(tmp_path):
    wnids = ["n01440764", "n01443537", "n01484850", "n01491361"]
    write_image_folder(tmp_path / "in", wnids, per_class=6)
    write_image_folder(tmp_path / "in", wnids, per_class=2, split="val")
    train = load_stream("imagenet", "train", root=str(tmp_path / "in"))
    val = load_stream("imagenet", "test", root=str(tmp_path / "in"))
    assert (len(train), len(val), train.num_classes, train.image_size) == (24, 8, 4, 224)
    assert train.mean == (0.485, 0.456, 0.406) and val.index.path(0).parent.parent.name == "val"
    subset = load_stream("imagenet", "train", root=str(tmp_path / "in"), subset=8)
    assert subset.index.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert evenly_spaced(10, 3).tolist() == [0, 3, 6] and evenly_spaced(2, 5).tolist() == [0, 1]
    with pytest.raises(DatasetError, match="is streamed from disk"):
        load_dataset("imagenet", "train", root=str(tmp_path / "in"))
    with pytest.raises(DatasetError, match="no folder with train/"):
        load_stream("imagenet", "train", root=str(tmp_path / "missing"))


def test_imagenet100_takes_solo_learns_100_classes_in_sorted_order(tmp_path):
    wnids = list(IMAGENET100_CLASSES[:99]) + ["n00000001"]  # one listed class missing, one extra
    write_image_folder(tmp_path / "in", wnids, per_class=1, size=(8, 8))
    with pytest.raises(DatasetError, match=f"1 are missing, e.g. {IMAGENET100_CLASSES[99]}"):
        load_stream("imagenet100", "train", root=str(tmp_path / "in"))
    write_image_folder(tmp_path / "in", [IMAGENET100_CLASSES[99]], per_class=1, size=(8, 8))
    data = load_stream("imagenet100", "train", root=str(tmp_path / "in"))
    assert (
        data.num_classes == 100
        and len(data) == 100
        and list(data.index.classes) == sorted(data.index.classes)
    )
    assert "n00000001" not in {data.index.path(i).parent.name for i in range(100)}
    assert len(load_stream("imagenet", "train", root=str(tmp_path / "in"))) == 101


def test_a_streamed_run_resumes_exactly(tmp_path):
    from synccp.train.loop import pretrain

    write_image_folder(tmp_path / "j", CLASSES, per_class=8)
    cfg = _cfg(tmp_path / "j", **{"data.workers": 1, "train.epochs": 3})
    whole = pretrain(cfg, tmp_path / "whole")
    assert pretrain(cfg, tmp_path / "cut", stop_after=4) == {"stopped_at": 4}
    assert pretrain(cfg, tmp_path / "cut", resume=True)["total_steps"] == whole["total_steps"] == 9
    for name in ("model.safetensors", "masks.safetensors"):
        one, two = (load_file(str(tmp_path / d / name)) for d in ("whole", "cut"))
        assert [k for k in one if not torch.equal(one[k], two[k])] == [], name


@pytest.mark.parametrize(
    "name, data, backbone, granularity, final",
    [
        ("imagenet_byol_r50_synccp.toml", "imagenet", "resnet50", "unstructured", 0.2),
        ("imagenet_byol_r50_synccp_nm.toml", "imagenet", "resnet50", "nm", 0.5),
        ("cifar10_byol_r18_synccp.toml", "cifar10", "resnet18", "unstructured", 0.2),
        ("cifar100_byol_r18_synccp.toml", "cifar100", "resnet18", "unstructured", 0.2),
    ],
)
def test_scale_presets_are_the_authors_recipe(name, data, backbone, granularity, final):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / name)
    s = cfg.sparsity
    assert (cfg.data.name, cfg.model.backbone, cfg.model.width, s.algorithm) == (
        data,
        backbone,
        64,
        "synccp",
    )
    assert s.granularity == granularity and s.density_gap == 0.3 and s.score_ema == 0.99
    assert (s.n / s.m if granularity == "nm" else s.density) == final
    assert granularity == "nm" or s.initial_density == 0.7
    imagenet = data == "imagenet"
    assert cfg.model.stem == ("imagenet" if imagenet else "cifar") and cfg.train.sync_bn == imagenet
    assert (cfg.train.epochs, cfg.train.batch_size) == ((100, 2048) if imagenet else (1000, 256))
