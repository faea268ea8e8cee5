"""Input validation for the Sparsifier: errors name the config key and the bad value."""

from __future__ import annotations

import logging

from torch import Tensor

from synccp.sparsity.allocation import ALLOCATIONS


def _in_range(key: str, value: float, low: float, high: float, *, closed_low: bool, closed_high: bool) -> None:
    ok_low = value >= low if closed_low else value > low
    ok_high = value <= high if closed_high else value < high
    if not (ok_low and ok_high):
        interval = f"{'[' if closed_low else '('}{low}, {high}{']' if closed_high else ')'}"
        raise ValueError(f"{key} must be in {interval}, got {value!r}")


def check_arguments(*, online: dict, second: dict | None, density: float, initial_density: float,
                    density_gap: float, allocation: str, score_ema: float, update_every: int,
                    start_step: int, end_step: int, steps_per_epoch: int, total_steps: int,
                    drop_fraction: float | None, sparse_branch: str) -> None:
    """Validate the Sparsifier's constructor arguments (granularity/algorithm: `Pattern`, policy)."""
    _in_range("sparsity.density", density, 0.0, 1.0, closed_low=False, closed_high=True)
    _in_range("sparsity.initial_density", initial_density, 0.0, 1.0, closed_low=False, closed_high=True)
    _in_range("sparsity.density_gap", density_gap, 0.0, 1.0, closed_low=True, closed_high=False)
    _in_range("sparsity.score_ema", score_ema, 0.0, 1.0, closed_low=True, closed_high=False)
    if drop_fraction is not None:
        _in_range("sparsity.drop_fraction", drop_fraction, 0.0, 1.0, closed_low=True, closed_high=False)
    if allocation not in ALLOCATIONS:
        raise ValueError(f"sparsity.allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
    if sparse_branch not in ("online", "second"):
        raise ValueError(f"sparsity.sparse_branch must be online or second, got {sparse_branch!r}")
    for key, value in (("sparsity.update_every", update_every), ("steps_per_epoch", steps_per_epoch),
                       ("total_steps", total_steps)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    if not 0 <= start_step <= end_step <= total_steps:
        raise ValueError(f"need 0 <= start_step <= end_step <= total_steps (sparsity.start_epoch/"
                         f"end_epoch), got start_step={start_step}, end_step={end_step}, "
                         f"total_steps={total_steps}")
    if not online:
        raise ValueError("online must name at least one prunable parameter, got an empty dict")
    if second is not None:
        _check_second(online, second)


def _check_second(online: dict, second: dict) -> None:
    if list(second) != list(online):
        missing = sorted(set(online) ^ set(second))
        raise ValueError(f"second must have the online parameter names in the same order; differing: {missing}")
    for name, weight in online.items():
        if tuple(second[name].shape) != tuple(weight.shape):
            raise ValueError(f"second[{name!r}] has shape {tuple(second[name].shape)}, "
                             f"online has {tuple(weight.shape)}")


def check_regrow_end(regrow_end_step: int, *, total_steps: int) -> None:
    if not 0 <= regrow_end_step <= total_steps:
        raise ValueError(f"sparsity.regrow_end must end drop-and-grow inside training, got step "
                         f"{regrow_end_step} of {total_steps}")


def check_branch_rule(policy, *, algorithm: str, shared: bool, sparse_branch: str) -> None:
    """SDCLR prunes the branch whose dense weights another branch keeps training: a momentum
    method's online encoder has no such branch (its pruned entries would get no gradient and its
    mask could never move), so SDCLR on BYOL/MoCo-v2 prunes the target."""
    if not policy.zero_pruned and not shared and sparse_branch == "online":
        raise ValueError(f"sparsity.sparse_branch='online' with sparsity.algorithm={algorithm!r} needs a "
                         f"shared-encoder method (simclr, barlow, simsiam): a momentum method's pruned "
                         f"online encoder has no dense branch training its pruned weights, so its mask "
                         f"could never change (static pruning); use sparse_branch='second' (a sparse "
                         f"target re-pruned every epoch from the dense EMA weights)")


def log_choices(log: logging.Logger, unfit: dict[str, str], online: dict, *, granularity: str,
                allocation: str, density: float, n: int, m: int, algorithm: str) -> None:
    """Tell people about layers left dense and settings that a granularity overrides."""
    for name, reason in unfit.items():
        log.warning("%s: %s; left dense (%s granularity)", name, reason, granularity)
    if granularity == "nm" and algorithm != "dense":
        if allocation != "uniform":
            log.info("N:M uses uniform per-layer group fractions; sparsity.allocation=%r is ignored", allocation)
        if abs(density - n / m) > 1e-9:
            log.info("N:M final density is n/m = %d/%d; sparsity.density=%s is ignored", n, m, density)
    if len(unfit) == len(online) and algorithm != "dense":
        log.warning("no prunable layer fits %s; the run is dense", granularity)


def check_state(state: dict, *, algorithm: str, granularity: str, names: list[str],
                weights: dict[str, Tensor]) -> None:
    """A Sparsifier state must come from the same algorithm, granularity and layers."""
    if state.get("format") != 2:
        raise ValueError(f"unknown Sparsifier state format {state.get('format')!r} (expected 2; format 1 "
                         f"was written by a synccp whose momentum-target and SDCLR semantics differ)")
    for key, expected in (("algorithm", algorithm), ("granularity", granularity)):
        if state.get(key) != expected:
            raise ValueError(f"checkpoint has sparsity.{key}={state.get(key)!r}, this run has {expected!r}")
    for branch in ("online", "second"):
        saved = state["masks"][branch]
        if sorted(saved) != sorted(names):
            raise ValueError(f"checkpoint {branch} masks cover {sorted(saved)}, this run prunes {sorted(names)}")
        for name in names:
            if tuple(saved[name].shape) != tuple(weights[name].shape):
                raise ValueError(f"checkpoint mask {branch}/{name} has shape {tuple(saved[name].shape)}, "
                                 f"the weight has {tuple(weights[name].shape)}")
