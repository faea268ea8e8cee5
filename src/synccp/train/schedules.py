"""Pure schedules of the training loop: the step clock and the learning rate (warmup + cosine)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Step counters: optimizer steps per epoch (last partial batch dropped) and in total."""

    steps_per_epoch: int
    total_steps: int

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch


def make_clock(images: int, *, batch_size: int, epochs: float) -> Clock:
    """The trainer's clock: ⌊images / batch⌋ steps per epoch, round(epochs × that) steps (≥ 1)."""
    steps_per_epoch = images // batch_size
    return Clock(steps_per_epoch, max(1, round(epochs * steps_per_epoch)))


def warmup_cosine(step: int, *, total_steps: int, warmup_steps: int, base: float,
                  final: float = 0.0, warmup_start: float = 0.0) -> float:
    """Linear warmup from `warmup_start` to `base` over `warmup_steps`, then cosine to `final`."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (base - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """Linear scaling (Goyal et al. 2017): lr = base_lr · batch_size / 256, as in solo-learn."""
    return base_lr * batch_size / 256


@dataclass(frozen=True)
class StepSchedules:
    """The learning rate and the EMA coefficient τ of every optimizer step (pure, from the step)."""

    total_steps: int
    warmup_steps: int
    base_lr: float  # after the linear scaling rule
    min_lr: float
    base_tau: float
    final_tau: float

    def lr(self, step: int) -> float:
        return warmup_cosine(step, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                             base=self.base_lr, final=self.min_lr)

    def tau(self, step: int) -> float:
        from synccp.models.ema import cosine_tau

        return cosine_tau(step, self.total_steps, base=self.base_tau, final=self.final_tau)
