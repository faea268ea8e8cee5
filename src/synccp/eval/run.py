"""`synccp eval DIR`: kNN and linear probes of a run's online encoder beside raw pixels."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from synccp import rundir
from synccp.data import ImageDataset, load_dataset
from synccp.eval.features import extract_features, raw_pixel_features
from synccp.eval.knn import knn_accuracy
from synccp.eval.linear import linear_probe
from synccp.models import build_backbone, prunable_parameters
from synccp.rundir.artifacts import load_backbone_weights
from synccp.specs import RunSpec
from synccp.train.runtime import resolve_device, use_bf16

LOG = logging.getLogger(__name__)
PROBES = ("linear", "knn", "both")


def probe_features(
    train_x, train_y, test_x, test_y, *, spec: RunSpec, num_classes: int, probe: str
) -> dict[str, float]:
    """Run the requested probes on (N, D) train and (M, D) test features; accuracies in %."""
    e = spec.eval
    result: dict[str, float] = {}
    if probe in ("knn", "both"):
        result["knn_top1"] = knn_accuracy(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes=num_classes,
            k=e.knn_k,
            temperature=e.knn_temperature,
        )
    if probe in ("linear", "both"):
        linear = linear_probe(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes=num_classes,
            epochs=e.linear_epochs,
            lr=e.linear_lr,
            batch_size=e.linear_batch_size,
            seed=spec.train.seed,
        )
        result["linear_top1"] = linear["test_top1"]
        result["linear_train_top1"] = linear["train_top1"]
    return result


def probe_splits(spec: RunSpec, subset: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits; `subset` > 0 keeps the first N images of each (a quick protocol
    for development runs, never for results)."""
    kwargs = dict(root=spec.data.root or None, image_size=spec.data.image_size or None)
    splits = (
        load_dataset(spec.data.name, "train", **kwargs),
        load_dataset(spec.data.name, "test", **kwargs),
    )
    if subset:
        splits = tuple(
            dataclasses.replace(d, images=d.images[:subset], labels=d.labels[:subset])
            for d in splits
        )
    return splits


def raw_pixel_baseline(
    spec: RunSpec, train: ImageDataset, test: ImageDataset, *, probe: str
) -> dict:
    """The probes on raw pixels, cached per dataset and probe settings (they never change)."""
    key = json.dumps(
        [
            spec.data.name,
            spec.data.image_size,
            len(train.images),
            len(test.images),
            probe,
            spec.eval.__dict__,
            spec.train.seed,
        ],
        sort_keys=True,
    )
    cache = Path(os.environ.get("SYNCCP_CACHE", Path.home() / ".cache" / "synccp")) / "raw_baseline"
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    cached = _cached_baseline(path, probe)
    if cached is not None:
        return cached
    result = probe_features(
        raw_pixel_features(train.images, mean=train.mean, std=train.std),
        train.labels,
        raw_pixel_features(test.images, mean=train.mean, std=train.std),
        test.labels,
        spec=spec,
        num_classes=train.num_classes,
        probe=probe,
    )
    rundir.write_json(path, result)
    return result


def _cached_baseline(path: Path, probe: str) -> dict | None:
    """The cached raw-pixel result, or None (recomputed) when absent, torn or not a result: a
    damaged cache entry is replaced, never fatal."""
    if not path.exists():
        return None
    wanted = {
        "knn": ("knn_top1",),
        "linear": ("linear_top1",),
        "both": ("knn_top1", "linear_top1"),
    }[probe]
    try:
        cached = rundir.read_json(path)
        if all(
            isinstance(cached.get(k), (int, float))
            and not isinstance(cached[k], bool)
            and 0 <= cached[k] <= 100
            for k in wanted
        ):
            return cached
        LOG.warning("ignoring cache %s: not a raw-pixel result; recomputing it", path)
    except rundir.RunDirError as err:
        LOG.warning("ignoring unreadable cache (%s); recomputing it", err)
    return None


def evaluate(
    run_dir: str | Path, *, probe: str = "both", device: str = "auto", subset: int | None = None
) -> dict:
    """Probe the run's exported online encoder; write and return `eval.json`.

    `subset` (default: the run's `eval.subset`, 0 = the full protocol) probes on the first N train
    and test images only; eval.json records it, and reports mark such numbers as quick."""
    if probe not in PROBES:
        raise ValueError(f"--probe must be one of {', '.join(PROBES)}, got {probe!r}")
    run_dir = Path(run_dir)
    spec = rundir.read_spec(run_dir)
    subset = spec.eval.subset if subset is None else subset
    if subset < 0:
        raise ValueError(f"--subset must be >= 0, got {subset}")
    train, test = probe_splits(spec, subset)
    backbone = build_backbone(
        spec.model.backbone,
        stem=spec.model.stem,
        width=spec.model.width,
        in_channels=train.images.shape[1],
    )
    load_backbone_weights(run_dir, backbone)
    target = resolve_device(device)
    bf16 = use_bf16(spec.runtime.precision, target)
    size = train.images.shape[-1]
    feats = [
        extract_features(
            backbone,
            d.images,
            image_size=size,
            mean=train.mean,
            std=train.std,
            batch_size=spec.eval.batch_size,
            device=target,
            bf16=bf16,
        )
        for d in (train, test)
    ]
    result = {
        "encoder": probe_features(
            feats[0],
            train.labels,
            feats[1],
            test.labels,
            spec=spec,
            num_classes=train.num_classes,
            probe=probe,
        ),
        "raw_pixels": raw_pixel_baseline(spec, train, test, probe=probe)
        if spec.eval.raw_baseline
        else None,
        "online_density": _density(backbone),
        "feature_precision": "bf16" if bf16 else "fp32",
        "train_images": len(train.images),
        "test_images": len(test.images),
        "protocol": f"quick (eval.subset={subset})" if subset else "full",
        "knn": {"k": spec.eval.knn_k, "temperature": spec.eval.knn_temperature},
        "linear": {
            "epochs": spec.eval.linear_epochs,
            "lr": spec.eval.linear_lr,
            "features": "cached, standardized",
        },
    }
    rundir.write_json(run_dir / rundir.EVAL, result)
    return result


def _density(backbone: torch.nn.Module) -> float:
    """Fraction of nonzero entries over the prunable weights of the exported encoder."""
    params = prunable_parameters(backbone).values()
    kept = sum(int(p.count_nonzero()) for p in params)
    return kept / sum(p.numel() for p in params)
