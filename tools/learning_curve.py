"""Learning curve of one run: kNN accuracy of the online encoder at every checkpoint.

Trains the run in segments (`pretrain(..., stop_after=...)` then resume — bit-identical to an
uninterrupted run, see tests/test_pretrain.py), probes the encoder of each epoch-end checkpoint
with the kNN probe on the full splits (the online mask applied, as the export does), appends one
line per point to `<run>/curve.jsonl`, and ends with the finished run's full evaluation
(`eval.json`: kNN and linear probes beside raw pixels). Re-running resumes: points already in
curve.jsonl are kept, training continues from the last checkpoint.

    OMP_NUM_THREADS=2 .venv/bin/python tools/learning_curve.py --config configs/simclr.toml \
        --set data.subset=0 --set model.width=8 --set sparsity.algorithm=dense --out runs/x
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from synccp import rundir
from synccp.config import load_config, load_resolved
from synccp.config.specs import run_spec
from synccp.eval.features import extract_features
from synccp.eval.knn import knn_accuracy
from synccp.eval.run import evaluate, probe_splits
from synccp.models import build_backbone
from synccp.rundir.checkpoint import load_checkpoint
from synccp.sparsity.registry import policy_for
from synccp.train.loop import pretrain

CURVE = "curve.jsonl"


def checkpoint_encoder(run: Path, cfg, channels: int) -> tuple[int, torch.nn.Module]:
    """(step, online backbone θ⊙M_online) of the run's newest checkpoint."""
    state = load_checkpoint(run)
    backbone = build_backbone(
        cfg.model.backbone, stem=cfg.model.stem, width=cfg.model.width, in_channels=channels
    )
    prefix = "backbone."
    weights = {k[len(prefix) :]: v for k, v in state["method"].items() if k.startswith(prefix)}
    if policy_for(cfg.sparsity.algorithm).zero_pruned:  # as the export (SDCLR's stays dense)
        for name, mask in state["sparsifier"]["masks"]["online"].items():
            weights[name] = weights[name] * mask
    backbone.load_state_dict(weights)
    return int(state["step"]), backbone


def knn_point(run: Path, splits) -> dict:
    cfg = load_resolved(run / rundir.CONFIG)
    train, test = splits
    step, backbone = checkpoint_encoder(run, cfg, train.images.shape[1])
    started = time.perf_counter()
    feats = [
        extract_features(
            backbone,
            d.images,
            image_size=train.images.shape[-1],
            mean=train.mean,
            std=train.std,
            batch_size=cfg.eval.batch_size,
            device=torch.device("cpu"),
            bf16=False,
        )
        for d in (train, test)
    ]
    knn = knn_accuracy(
        feats[0],
        train.labels,
        feats[1],
        test.labels,
        num_classes=train.num_classes,
        k=cfg.eval.knn_k,
        temperature=cfg.eval.knn_temperature,
    )
    return {"step": step, "knn_top1": knn, "probe_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--every", type=float, default=1.0, help="epochs between points")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.set)
    run, curve = args.out, args.out / CURVE
    done = (
        {json.loads(line)["step"] for line in curve.read_text().splitlines()}
        if curve.exists()
        else set()
    )
    splits = probe_splits(run_spec(cfg))  # the probes' full train and test splits
    images = len(
        splits[0].images[: cfg.data.subset or None]
    )  # the pretraining split (in-memory data)
    steps_per_epoch, epochs = images // cfg.train.batch_size, cfg.train.epochs
    total = int(round(epochs * steps_per_epoch))
    stops = sorted(
        {
            min(total, int(round(args.every * i * steps_per_epoch)))
            for i in range(1, math.ceil(epochs / args.every - 1e-9) + 1)
        }
    )
    for stop in stops:
        started = time.perf_counter()
        pretrain(cfg, run, resume=(run / rundir.CONFIG).exists(), stop_after=stop)
        train_s = time.perf_counter() - started
        if stop in done:
            continue
        point = knn_point(run, splits)
        point.update(epoch=round(stop / steps_per_epoch, 4), segment_train_s=round(train_s, 1))
        with curve.open("a") as f:
            f.write(json.dumps(point) + "\n")
        print(json.dumps(point), flush=True)
    result = (
        json.loads((run / rundir.EVAL).read_text())
        if (run / rundir.EVAL).exists()
        else evaluate(run)
    )
    print(json.dumps({"eval": result["encoder"], "raw_pixels": result["raw_pixels"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
