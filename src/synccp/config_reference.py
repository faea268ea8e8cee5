"""The config reference (`synccp config`, the README's table): generated from the schema.

Defaults come from the dataclasses of synccp.config — the one source — and the "demo" column from
the embedded default run (`synccp pretrain` with no arguments). Only the meanings live here;
tests fail when a key has none or the README's table differs from `reference("markdown")`.
"""

from __future__ import annotations

import json

from synccp.config import CHOICES, Config, config_to_dict, load_config

MEANINGS = {
    "data.name": "dataset (stl10 pretrains on train+unlabeled)",
    "data.root": "folder of the dataset files; empty: $SYNCCP_DATA, /usr/share/datasets/<name>, "
                 "~/.cache/synccp",
    "data.subset": "pretrain on the first N training images only (0 = all)",
    "data.image_size": "resize to this size (0 = native: 28, 32, 96; image folders 64; streamed "
                       "224)",
    "data.stream": "stream an image_folder from disk instead of decoding it into memory (ImageNet "
                   "always streams; docs/scale.md)",
    "data.workers": "streaming: DataLoader decoding processes per training process",
    "data.on_corrupt": "streaming: an unreadable image stops the run (error) or is skipped by "
                       "name (skip)",
    "model.backbone": "ResNet depth",
    "model.width": "channels of stage 1 (64 = standard ResNet)",
    "model.stem": "cifar (3x3, no max-pool) or imagenet (7x7/2 + max-pool, torchvision's layout)",
    "method.name": "SSL method",
    "method.proj_hidden_dim": "projector hidden width (unset: the method's solo-learn CIFAR "
                              "default)",
    "method.proj_output_dim": "projector output width (unset: per method)",
    "method.pred_hidden_dim": "predictor hidden width (unset: per method)",
    "method.temperature": "InfoNCE / NT-Xent temperature (unset: per method)",
    "method.queue_size": "negatives queue (unset: per method)",
    "method.base_tau": "EMA target momentum at the start (unset: per method)",
    "method.final_tau": "EMA target momentum at the end (unset: per method)",
    "method.lambda_offdiag": "off-diagonal weight (unset: per method)",
    "method.scale": "loss scale (unset: per method)",
    "train.epochs": "epochs (fractional allowed); steps = epochs x floor(images / batch)",
    "train.batch_size": "global batch",
    "train.seed": "seeds model init, data order and augmentations",
    "train.optimizer": "biases and norm parameters: no weight decay, no LARS adaptation",
    "train.lr": "base learning rate, scaled x batch/256; warmup + cosine",
    "train.weight_decay": "weight decay",
    "train.momentum": "optimizer momentum",
    "train.eta": "LARS trust coefficient",
    "train.warmup_epochs": "linear LR warmup",
    "train.min_lr": "LR at the end of the cosine",
    "train.device": "auto = cuda when available",
    "train.precision": "auto = bf16 autocast + channels_last on GPU, fp32 on CPU; the probes use "
                       "the same",
    "train.compile": "torch.compile the online backbone in place (heads, loss, optimizer eager); "
                     "on the CPU refused when a strided 1x1 conv has < 8 input channels "
                     "(oneDNN#6035)",
    "train.log_every": "log cadence (optimizer steps)",
    "train.progress": "progress bar",
    "train.sync_bn": "SyncBatchNorm under torchrun (CUDA only)",
    "train.global_augment": "torchrun: every process augments the whole global batch (views of a "
                            "1-process run)",
    "train.loggers": "live loggers next to metrics.jsonl: tensorboard, wandb (offline unless "
                     "WANDB_MODE says otherwise)",
    "sparsity.algorithm": "sparse-training algorithm",
    "sparsity.granularity": "what a mask keeps or drops as a unit",
    "sparsity.density": "final density (fraction kept) of the online encoder (N:M: n/m)",
    "sparsity.initial_density": "density before the ramp",
    "sparsity.density_gap": "delta: the second branch keeps min(1, density + delta), and always "
                            "the online mask; at most 1 - final density",
    "sparsity.n": "N of the N:M pattern",
    "sparsity.m": "M of the N:M pattern",
    "sparsity.block_out": "block tile height (C_out) per kernel position",
    "sparsity.block_in": "block tile width (C_in) per kernel position",
    "sparsity.allocation": "density budget across layers",
    "sparsity.score_ema": "beta of the magnitude-score EMA (0 = plain magnitude)",
    "sparsity.update_every": "optimizer steps between mask updates",
    "sparsity.ramp_start": "start of the density ramp of gmp/granet/synccp as a fraction of "
                           "train.epochs (unset: 0.0)",
    "sparsity.ramp_end": "end of the ramp as a fraction of train.epochs (unset: 0.75); masks "
                         "frozen after (GraNet keeps regrowing)",
    "sparsity.start_epoch": "the ramp start in absolute (fractional) epochs; wins over ramp_start",
    "sparsity.end_epoch": "the ramp end in absolute epochs; wins over ramp_end",
    "sparsity.drop_fraction": "RigL/GraNet initial drop fraction (unset: RigL 0.3, GraNet 0.5; "
                              "cosine-decayed, GraNet to 0.005)",
    "sparsity.regrow_end": "fraction of training where drop-and-grow stops (unset: RigL 0.75, "
                           "GraNet 1.0)",
    "sparsity.sparse_branch": "SDCLR: which branch is pruned; online only with a shared encoder "
                              "(simclr, barlow, simsiam)",
    "eval.knn_k": "weighted kNN neighbours (Wu et al. 2018)",
    "eval.knn_temperature": "weighted kNN temperature",
    "eval.linear_epochs": "linear probe epochs on cached features",
    "eval.linear_lr": "linear probe learning rate",
    "eval.linear_batch_size": "linear probe batch",
    "eval.raw_baseline": "also probe raw pixels (cached)",
    "eval.subset": "probe on the first N train and N test images only (0 = the full protocol; for "
                   "development runs)",
    "eval.batch_size": "images per feature-extraction batch",
}


def _method_owners(key: str) -> str:
    """'; methods: byol, simsiam' for a method key: the rows that have it (others refuse it)."""
    from synccp.methods import METHODS

    section, name = key.split(".", 1)
    if section != "method" or name == "name":
        return ""
    return "; methods: " + ", ".join(row.name for row in METHODS.values() if name in row.options)


def rows() -> list[dict]:
    """One row per key: key, default, demo value, choices, meaning."""
    defaults = config_to_dict(Config())
    demo = config_to_dict(load_config(None))
    out = []
    for section in defaults:
        for name in defaults[section]:
            key = f"{section}.{name}"
            out.append(
                {
                    "key": key,
                    "default": defaults[section][name],
                    "demo": demo[section][name],
                    "choices": CHOICES.get(key, ()),
                    "meaning": MEANINGS.get(key, "") + _method_owners(key),
                }
            )
    return out


def _literal(value) -> str:
    return "unset" if value is None else json.dumps(value)


def reference(style: str = "text") -> str:
    """The reference as aligned text, a Markdown table (the README's) or a commented TOML."""
    table = rows()
    if style == "markdown":
        lines = [
            "| key | default | `synccp pretrain` (no arguments) | meaning |",
            "|---|---|---|---|",
        ]
        for r in table:
            meaning = r["meaning"] + (
                f"; one of {', '.join(f'`{c}`' for c in r['choices'])}" if r["choices"] else ""
            )
            lines.append(
                f"| `{r['key']}` | `{_literal(r['default'])}` | `{_literal(r['demo'])}` | "
                f"{meaning} |"
            )
        return "\n".join(lines)
    if style == "toml":
        lines, section = [], None
        for r in table:
            head = r["key"].split(".")[0]
            if head != section:
                lines += ["", f"[{head}]"] if section else [f"[{head}]"]
                section = head
            name = r["key"].split(".", 1)[1]
            if r["default"] is None:
                lines.append(f"# {name} =  # {r['meaning']}")
            else:
                lines.append(f"{name} = {_literal(r['default'])}  # {r['meaning']}")
        return "\n".join(lines)
    width = max(len(r["key"]) for r in table)
    lines = [f"{'key':{width}s}  {'default':14s} {'no-arguments run':16s} meaning"]
    for r in table:
        choices = f" [{'|'.join(r['choices'])}]" if r["choices"] else ""
        lines.append(
            f"{r['key']:{width}s}  {_literal(r['default']):14s} {_literal(r['demo']):16s} "
            f"{r['meaning']}{choices}"
        )
    return "\n".join(lines)
