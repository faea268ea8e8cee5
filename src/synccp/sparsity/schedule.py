"""Density and drop-fraction schedules, and the per-branch target densities of every algorithm.

All functions are pure functions of the global optimizer step (DESIGN.md §1: "Schedules count real
optimizer steps"). Step 0 is the state before the first optimizer step (`Sparsifier.prepare_`).
"""

from __future__ import annotations

import math

from synccp.sparsity.granularity import pattern_for
from synccp.sparsity.registry import policy_for


def cubic_density(step: int, *, initial: float, final: float, start: int, end: int) -> float:
    """Zhu & Gupta's gradual pruning ramp, written as a density (fraction kept).

    Zhu & Gupta, "To prune, or not to prune" (2017), eq. 1: "s_t = s_f + (s_i − s_f)(1 − (t −
    t_0)/(nΔt))^3". With densities d = 1 − s: `d_f + (d_i − d_f)(1 − φ)^3`, φ = (t − start)/(end −
    start); `initial` before `start`, `final` from `end` on (also when start == end).
    """
    if step >= end:
        return float(final)
    if step <= start:
        return float(initial)
    phase = (step - start) / (end - start)
    return float(final + (initial - final) * (1.0 - phase) ** 3)


def constant_density(step: int, *, density: float) -> float:
    """The same density at every step (static masks, RigL, SDCLR's sparse branch)."""
    del step
    return float(density)


def cosine_drop_fraction(step: int, *, initial: float, end: int, final: float = 0.0) -> float:
    """RigL's / GraNet's cosine-decayed drop (death) fraction: `final` at `end`, 0 after it.

    Evci et al., "Rigging the Lottery" (ICML 2020), §3: "f_decay(t; α, T_end) = α/2 (1 +
    cos(tπ/T_end))" (`final` = 0). GraNet (VITA-Group/GraNet, `CIFAR/main.py` builds
    `CosineDecay(prune_rate, T_max=all training steps, eta_min=0.005)`): the same cosine from
    `initial` down to `final` instead of 0.
    """
    if end <= 0 or step > end or (step == end and final == 0.0):
        return 0.0
    return float(final + (initial - final) / 2.0 * (1.0 + math.cos(math.pi * max(step, 0) / end)))


DEFAULT_RAMP = (0.0, 0.75)  # the density ramp as fractions of training when no key sets it


def ramp_epochs(*, start_epoch: float | None, end_epoch: float | None, ramp_start: float | None,
                ramp_end: float | None, epochs: float) -> tuple[float, float]:
    """The density ramp in (fractional) epochs: `sparsity.start_epoch`/`end_epoch` (absolute) when
    set, else `sparsity.ramp_start`/`ramp_end` (fractions of `train.epochs`), else DEFAULT_RAMP.
    The one place the ramp keys are read, for the trainer, the cost model and the reports."""
    start = start_epoch if start_epoch is not None else (
        DEFAULT_RAMP[0] if ramp_start is None else ramp_start) * epochs
    end = end_epoch if end_epoch is not None else (
        DEFAULT_RAMP[1] if ramp_end is None else ramp_end) * epochs
    return float(start), float(end)


def ramp_steps(start_epoch: float, end_epoch: float, steps_per_epoch: int) -> tuple[int, int]:
    """(start_step, end_step) of the ramp given in (fractional) epochs, in optimizer steps. The one
    rounding rule shared by the trainer and the cost model."""
    return round(start_epoch * steps_per_epoch), round(end_epoch * steps_per_epoch)


def sparsity_steps(sparsity, *, epochs: float, steps_per_epoch: int,
                   total_steps: int) -> tuple[int, int, int | None]:
    """(ramp start step, ramp end step, drop-and-grow end step or None for the algorithm's own)
    from a `[sparsity]` config section (read by attribute): the one conversion of the window keys
    into steps, shared by the trainer and the cost model. The ramp is clamped into the run."""
    start, end = ramp_epochs(start_epoch=sparsity.start_epoch, end_epoch=sparsity.end_epoch,
                             ramp_start=sparsity.ramp_start, ramp_end=sparsity.ramp_end,
                             epochs=epochs)
    start_step, end_step = ramp_steps(start, end, steps_per_epoch)
    end_step = min(end_step, total_steps)
    regrow = None if sparsity.regrow_end is None else round(sparsity.regrow_end * total_steps)
    return min(start_step, end_step), end_step, regrow


def is_update_step(step: int, *, start: int, end: int, every: int) -> bool:
    """True when masks change at `step`: every `every` steps from `start`, and always at `end`.

    Updating at `end` even when it is off the `every` grid makes the final density exact.
    `every` >= 1 is validated once, by `SparsitySpec` (sparsity.update_every).
    """
    if step < start or step > end:
        return False
    return step == end or (step - start) % every == 0


def last_update_step(step: int, *, start: int, end: int, every: int) -> int | None:
    """The latest update step ≤ `step` (None when no update has happened yet)."""
    if step < start:
        return None
    if step >= end:
        return end
    return start + (step - start) // every * every


def _final_and_initial(*, density: float, initial_density: float, granularity: str,
                       n: int, m: int) -> tuple[float, float]:
    """Final and initial total density (`Pattern.final_density`: N:M ends at exactly n/m); the
    ramp never starts below the final density."""
    final = pattern_for(granularity, n=n, m=m).final_density(density)
    return final, max(initial_density, final)


def branch_densities(step: int, *, algorithm: str, density: float, initial_density: float,
                     density_gap: float, start_step: int, end_step: int, sparse_branch: str,
                     granularity: str, n: int, m: int,
                     update_every: int = 1) -> tuple[float, float]:
    """Target total density (online, second branch) in force after optimizer step `step`.

    Masks change only at update steps (`is_update_step` with `update_every`; the default 1 gives
    the continuous ramp), so between updates the density of the last update is returned. For
    `granularity="nm"` the final density is n/m whatever `density` says. Targets are over the layers
    that fit the granularity; unfit layers stay dense (see `Sparsifier.summary`).
    """
    targets = policy_for(algorithm).targets  # the algorithm's row (synccp.sparsity.registry)
    final, initial = _final_and_initial(density=density, initial_density=initial_density,
                                        granularity=granularity, n=n, m=m)
    if targets == "dense":
        return 1.0, 1.0
    if targets == "final":
        return final, final
    if targets == "one_branch":
        if sparse_branch not in ("online", "second"):
            raise ValueError(f"sparsity.sparse_branch must be online or second, "
                             f"got {sparse_branch!r}")
        return (final, 1.0) if sparse_branch == "online" else (1.0, final)
    last = last_update_step(step, start=start_step, end=end_step, every=update_every)
    online = cubic_density(0 if last is None else last, initial=initial, final=final,
                           start=start_step, end=end_step)
    if targets == "ramp_gap":
        return online, min(1.0, online + density_gap)
    return online, online
