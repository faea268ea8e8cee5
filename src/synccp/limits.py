"""Bounds of the size-like config keys and of a run's totals.

A value that passes the type check must not reach the allocator or the step loop unbounded
(`train.epochs = 1e15` once allocated 20 GB in `synccp cost` before it was killed): each limit is
far above any published setting and fails at load time with a `ConfigError` naming the key.
Totals (optimizer steps, mask updates) are checked where the dataset size is known: at load
time for the datasets of fixed size, and again once the data is loaded (`train/setup.py`).
"""

from __future__ import annotations

import math

from synccp.config import Config, ConfigError

SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "train.seed": (0, 2**32 - 1), "train.batch_size": (1, 65536), "train.epochs": (0, 10_000),
    "model.width": (1, 256), "data.image_size": (0, 512), "data.subset": (0, 100_000_000),
    "method.queue_size": (1, 2**20), "method.proj_hidden_dim": (1, 16384),
    "method.proj_output_dim": (1, 16384), "method.pred_hidden_dim": (1, 16384),
    "eval.linear_epochs": (1, 10_000), "eval.knn_k": (1, 10_000), "eval.linear_batch_size": (1, 65536),
    "sparsity.m": (2, 256), "sparsity.block_out": (1, 256), "sparsity.block_in": (1, 256)}
MAX_TOTAL_STEPS = 10_000_000  # 5x ImageNet for 1000 epochs at batch 256
MAX_MASK_UPDATES = 100_000
KNOWN_TRAIN_IMAGES = {"fashion_mnist": 60000, "cifar10": 50000, "cifar100": 50000, "stl10": 105000}


def check_sizes(cfg: Config) -> None:
    """Every size-like key within `SIZE_LIMITS`; for datasets of known size, the totals too."""
    for key, (low, high) in SIZE_LIMITS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is not None and not low <= value <= high:
            raise ConfigError(f"{key} must be in [{low}, {high}], got {value!r}")
    images = KNOWN_TRAIN_IMAGES.get(cfg.data.name)
    if images is not None:
        images = min(images, cfg.data.subset or images)
        check_totals(cfg, steps_per_epoch=images // cfg.train.batch_size)


def check_totals(cfg: Config, *, steps_per_epoch: int) -> None:
    """Total optimizer steps and mask updates (an upper bound) within MAX_TOTAL_STEPS and
    MAX_MASK_UPDATES; called with the real steps per epoch once the data is loaded."""
    s, total = cfg.sparsity, round(cfg.train.epochs * steps_per_epoch)
    if total > MAX_TOTAL_STEPS:
        raise ConfigError(f"train.epochs={cfg.train.epochs} at train.batch_size={cfg.train.batch_size} "
                          f"({steps_per_epoch} steps per epoch) makes {total} optimizer steps, more than "
                          f"the {MAX_TOTAL_STEPS} synccp runs")
    if s.algorithm in ("dense", "static"):
        return
    from synccp.sparsity.schedule import ramp_epochs

    start, end = ramp_epochs(start_epoch=s.start_epoch, end_epoch=s.end_epoch, ramp_start=s.ramp_start,
                             ramp_end=s.ramp_end, epochs=cfg.train.epochs)
    from synccp.sparsity import policy_for

    window = total if policy_for(s.algorithm).regrow is not None else (end - start) * steps_per_epoch
    updates = math.ceil(cfg.train.epochs) if s.algorithm == "sdclr" else int(window // s.update_every)
    if updates > MAX_MASK_UPDATES:
        raise ConfigError(f"sparsity.update_every={s.update_every} makes up to {updates} mask updates "
                          f"({s.algorithm}, {total} steps), more than {MAX_MASK_UPDATES}; raise "
                          f"sparsity.update_every or shorten the run")
