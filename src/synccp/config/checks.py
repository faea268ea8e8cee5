"""Value checks of a `Config` that need more than a type; errors name the key and the value."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from synccp.config.schema import LOGGERS, Config, ConfigError, MethodConfig


@dataclass(frozen=True)
class Range:
    """An interval of allowed values; `open_low`/`open_high` exclude the end point."""

    low: float
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return (f"{'(' if self.open_low else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.open_high else ']'}")


_POSITIVE, _NON_NEGATIVE = Range(0.0, open_low=True), Range(0.0)
_FRACTION, _KEPT = Range(0.0, 1.0, open_high=True), Range(0.0, 1.0, open_low=True)
# The clock of the load-time SparsitySpec (the data size comes later).
NOMINAL_STEPS_PER_EPOCH = 1000
# The one table of ranges: every numeric key with a bound is checked here and nowhere else, except
# the method options (`synccp.methods.base.check_options`, also run by the methods' constructors)
# and the values `SparsitySpec` owns (density, initial_density, density_gap, score_ema,
# drop_fraction, update_every, n < m, the gap rule): the spec checks them, for the config as for
# library users.
# Sizes have upper limits far above any published setting (issue 16: `train.epochs = 1e15` once
# allocated 20 GB in `synccp cost` before it was killed). `None` values (method keys of
# another method, unset ramp ends) are not checked.
RANGES: dict[str, Range] = {
    "data.subset": Range(0, 100_000_000),
    "data.image_size": Range(0, 512),
    "data.workers": _NON_NEGATIVE,
    "model.width": Range(1, 256),
    "train.epochs": Range(0, 10_000, open_low=True),
    "train.batch_size": Range(1, 65536),
    "train.seed": Range(0, 2**32 - 1),
    "train.lr": _POSITIVE,
    "train.weight_decay": _NON_NEGATIVE,
    "train.momentum": _FRACTION,
    "train.warmup_epochs": _NON_NEGATIVE,
    "train.min_lr": _NON_NEGATIVE,
    "train.log_every": _POSITIVE,
    "sparsity.regrow_end": _KEPT,
    "sparsity.ramp_start": Range(0.0, 1.0),
    "sparsity.ramp_end": Range(0.0, 1.0),
    "sparsity.m": Range(2, 256),
    "sparsity.block_out": Range(1, 256),
    "sparsity.block_in": Range(1, 256),
    "eval.knn_k": Range(1, 10_000),
    "eval.knn_temperature": _POSITIVE,
    "eval.linear_epochs": Range(1, 10_000),
    "eval.linear_lr": _POSITIVE,
    "eval.linear_batch_size": Range(1, 65536),
    "eval.batch_size": _POSITIVE,
    "eval.subset": _NON_NEGATIVE,
}
_UNITS = {
    "sparsity.regrow_end": " (a fraction of train.epochs)",
    "sparsity.ramp_start": " (a fraction of train.epochs)",
    "sparsity.ramp_end": " (a fraction of train.epochs)",
}


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{key} {why}, got {value!r}")


def check_range(key: str, value: Any) -> None:
    """`ConfigError` naming `key` unless `value` lies in `RANGES[key]` (None is not checked)."""
    if value is not None and value not in RANGES[key]:
        bound = RANGES[key]
        where = f"in {bound}" if bound.high != math.inf else str(bound)
        raise _bad(key, value, f"must be {where}{_UNITS.get(key, '')}")


def check_config(cfg: Config) -> None:
    """Every check of a built `Config` (before method defaults are filled in)."""
    check_method_keys(cfg.method)
    for key in RANGES:
        section, name = key.split(".")
        check_range(key, getattr(getattr(cfg, section), name))
    s = cfg.sparsity
    if s.initial_density < s.density:
        raise ConfigError(
            f"sparsity.initial_density must be >= sparsity.density, "
            f"got initial_density={s.initial_density}, density={s.density}"
        )
    _check_ramp(cfg)
    _check_sparsity_spec(cfg)
    _check_sparse_branch(cfg)
    loggers = cfg.train.loggers
    unknown = [name for name in loggers.split(",") if name.strip() not in ("", *LOGGERS)]
    if unknown:
        raise _bad(
            "train.loggers",
            loggers,
            f"lists unknown logger(s) {unknown} (known: {', '.join(LOGGERS)})",
        )


def check_method_options(method: MethodConfig) -> None:
    """The resolved method options, by the methods' own check (`methods.base.check_options`)."""
    from synccp.methods import method_defaults
    from synccp.methods.base import check_options

    try:
        check_options(**{key: getattr(method, key) for key in method_defaults(method.name)})
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_method_keys(method: MethodConfig) -> None:
    """Keys of another method are an error: they would be stored and silently unused."""
    from synccp.methods import foreign_options, method_defaults

    values = {
        f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.name != "name"
    }
    foreign = foreign_options(method.name, values)
    if foreign:
        raise ConfigError(
            f"method.{foreign[0]} is not an option of method.name={method.name!r} (its "
            f"options: {', '.join(method_defaults(method.name))})"
        )


def _check_ramp(cfg: Config) -> None:
    """The ramp keys, checked only for algorithms that have a ramp (a dense run ignores them)."""
    s, epochs = cfg.sparsity, cfg.train.epochs
    for fraction, absolute in (("ramp_start", "start_epoch"), ("ramp_end", "end_epoch")):
        if getattr(s, fraction) is not None and getattr(s, absolute) is not None:
            raise ConfigError(
                f"set sparsity.{fraction} (a fraction of train.epochs) or sparsity.{absolute} "
                f"(in epochs), not both; got {fraction}={getattr(s, fraction)}, "
                f"{absolute}={getattr(s, absolute)}"
            )
    from synccp.sparsity import policy_for

    if not policy_for(s.algorithm).has_ramp:  # the algorithm's row says whether it has a ramp
        return
    start, end = s.ramp_epochs(epochs)
    if not 0.0 <= start <= end <= epochs:
        given = ", ".join(
            f"sparsity.{key}={getattr(s, key)}"
            for key in ("start_epoch", "end_epoch", "ramp_start", "ramp_end")
            if getattr(s, key) is not None
        )
        raise ConfigError(
            f"the density ramp of sparsity.algorithm={s.algorithm!r} must lie in [0, train.epochs]"
            f" with start <= end, got start={start:g}, end={end:g} epochs of train.epochs="
            f"{epochs:g} ({given or 'the default ramp'})"
        )


def _check_sparsity_spec(cfg: Config) -> None:
    """The `[sparsity]` values as the run's `SparsitySpec` checks them (the one place of their
    ranges), on a nominal clock: the real one needs the data, known only when training starts."""
    total = max(1, round(cfg.train.epochs * NOMINAL_STEPS_PER_EPOCH))
    try:
        cfg.sparsity.spec(
            epochs=cfg.train.epochs,
            steps_per_epoch=NOMINAL_STEPS_PER_EPOCH,
            total_steps=total,
            seed=cfg.train.seed,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_sparse_branch(cfg: Config) -> None:
    """SDCLR on a momentum method prunes the target (sparsity.sparsity.checks.check_branch_rule)."""
    from synccp.methods import METHODS
    from synccp.sparsity import checks, policy_for

    s = cfg.sparsity
    try:
        checks.check_branch_rule(
            policy_for(s.algorithm),
            algorithm=s.algorithm,
            shared=METHODS[cfg.method.name].shared_encoder,
            sparse_branch=s.sparse_branch,
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None
