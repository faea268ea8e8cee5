"""Pure schedules of the training loop: learning rate (linear warmup + cosine)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int, base: float,
                  final: float = 0.0, warmup_start: float = 0.0) -> float:
    """Linear warmup from `warmup_start` to `base` over `warmup_steps`, then cosine to `final`."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (base - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """Linear scaling rule (Goyal et al. 2017): lr = base_lr · batch_size / 256, as in solo-learn."""
    return base_lr * batch_size / 256
