"""Bounds of a run's totals (single keys: `synccp.config.checks.RANGES`).

Totals (optimizer steps, mask updates) are checked where the dataset size is known: at load
time for the datasets of fixed size, and again once the data is loaded (`train/setup.py`).
"""

from __future__ import annotations

import math

from synccp.config.schema import Config, ConfigError

MAX_TOTAL_STEPS = 10_000_000  # 5x ImageNet for 1000 epochs at batch 256
MAX_MASK_UPDATES = 100_000
KNOWN_TRAIN_IMAGES = {"fashion_mnist": 60000, "cifar10": 50000, "cifar100": 50000, "stl10": 105000}


def check_known_totals(cfg: Config) -> None:
    """For datasets of known size, the totals of `check_totals` at load time."""
    images = KNOWN_TRAIN_IMAGES.get(cfg.data.name)
    if images is not None:
        images = min(images, cfg.data.subset or images)
        check_totals(cfg, steps_per_epoch=images // cfg.train.batch_size)


def check_totals(cfg: Config, *, steps_per_epoch: int) -> None:
    """Total optimizer steps and mask updates (an upper bound) within MAX_TOTAL_STEPS and
    MAX_MASK_UPDATES; called with the real steps per epoch once the data is loaded."""
    s, total = cfg.sparsity, round(cfg.train.epochs * steps_per_epoch)
    if total > MAX_TOTAL_STEPS:
        raise ConfigError(
            f"train.epochs={cfg.train.epochs} at train.batch_size={cfg.train.batch_size} "
            f"({steps_per_epoch} steps per epoch) makes {total} optimizer steps, more than "
            f"the {MAX_TOTAL_STEPS} synccp runs"
        )
    if s.algorithm in ("dense", "static"):
        return
    start, end = s.ramp_epochs(cfg.train.epochs)
    from synccp.sparsity import policy_for

    window = (
        total if policy_for(s.algorithm).regrow is not None else (end - start) * steps_per_epoch
    )
    updates = (
        math.ceil(cfg.train.epochs) if s.algorithm == "sdclr" else int(window // s.update_every)
    )
    if updates > MAX_MASK_UPDATES:
        raise ConfigError(
            f"sparsity.update_every={s.update_every} makes up to {updates} mask updates "
            f"({s.algorithm}, {total} steps), more than {MAX_MASK_UPDATES}; raise "
            f"sparsity.update_every or shorten the run"
        )
