"""Input validation for the Sparsifier: errors name the config key and the bad value."""

from __future__ import annotations

import logging

from torch import Tensor

from synccp.sparsity.granularity import Pattern


def check_weights(*, online: dict, second: dict | None) -> None:
    """The prunable weights: at least one, and a momentum target with the same names and shapes."""
    if not online:
        raise ValueError("online must name at least one prunable parameter, got an empty dict")
    if second is not None:
        _check_second(online, second)


def _check_second(online: dict, second: dict) -> None:
    if list(second) != list(online):
        missing = sorted(set(online) ^ set(second))
        raise ValueError(f"second must have the online parameter names in the same order; "
                         f"differing: {missing}")
    for name, weight in online.items():
        if tuple(second[name].shape) != tuple(weight.shape):
            raise ValueError(f"second[{name!r}] has shape {tuple(second[name].shape)}, "
                             f"online has {tuple(weight.shape)}")


def check_branch_rule(policy, *, algorithm: str, shared: bool, sparse_branch: str) -> None:
    """SDCLR prunes the branch whose dense weights another branch keeps training: a momentum
    method's online encoder has no such branch (its pruned entries would get no gradient and its
    mask could never move), so SDCLR on BYOL/MoCo-v2 prunes the target."""
    if not policy.zero_pruned and not shared and sparse_branch == "online":
        raise ValueError(f"sparsity.sparse_branch='online' with sparsity.algorithm={algorithm!r} "
                         f"needs a shared-encoder method (simclr, barlow, simsiam): a momentum "
                         f"method's pruned online encoder has no dense branch training its pruned "
                         f"weights, so its mask could never change (static pruning); use "
                         f"sparse_branch='second' (a sparse target re-pruned every epoch from the "
                         f"dense EMA weights)")


def log_choices(log: logging.Logger, unfit: dict[str, str], online: dict, *, pattern: Pattern,
                allocation: str, density: float, algorithm: str) -> None:
    """Tell people about layers left dense and settings that the pattern overrides."""
    for name, reason in unfit.items():
        log.warning("%s: %s; left dense (%s granularity)", name, reason, pattern.granularity)
    if algorithm != "dense":
        for note in pattern.notes(allocation=allocation, density=density):
            log.info("%s", note)
    if len(unfit) == len(online) and algorithm != "dense":
        log.warning("no prunable layer fits %s; the run is dense", pattern.granularity)


def check_state(state: dict, *, algorithm: str, granularity: str, names: list[str],
                weights: dict[str, Tensor]) -> None:
    """A Sparsifier state must come from the same algorithm, granularity and layers."""
    if state.get("format") != 2:
        raise ValueError(f"unknown Sparsifier state format {state.get('format')!r} (expected 2; "
                         f"format 1 was written by a synccp whose momentum-target and SDCLR "
                         f"semantics differ)")
    for key, expected in (("algorithm", algorithm), ("granularity", granularity)):
        if state.get(key) != expected:
            raise ValueError(f"checkpoint has sparsity.{key}={state.get(key)!r}, this run has "
                             f"{expected!r}")
    for branch in ("online", "second"):
        saved = state["masks"][branch]
        if sorted(saved) != sorted(names):
            raise ValueError(f"checkpoint {branch} masks cover {sorted(saved)}, this run prunes "
                             f"{sorted(names)}")
        for name in names:
            if tuple(saved[name].shape) != tuple(weights[name].shape):
                raise ValueError(f"checkpoint mask {branch}/{name} has shape "
                                 f"{tuple(saved[name].shape)}, the weight has "
                                 f"{tuple(weights[name].shape)}")
