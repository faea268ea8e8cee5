"""The one configuration schema: frozen dataclasses, TOML files and `--set key=value` overrides.

Every user-facing key lives here (DESIGN.md §3). Unknown keys, wrong types and out-of-range values
fail at load time with a `ConfigError` that names the key and the value.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged (a dependency there, see pyproject.toml)
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and the value."""


@dataclass(frozen=True)
class DataConfig:
    name: str = "fashion_mnist"
    root: str = ""
    subset: int = 0
    image_size: int = 0
    stream: bool = False  # image_folder: decode from disk per batch (imagenet, imagenet100 always do)
    workers: int = 4  # streaming: DataLoader decoding processes per training process
    on_corrupt: str = "error"  # streaming: an unreadable image stops the run, or is skipped by name


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18"
    width: int = 64
    stem: str = "cifar"


@dataclass(frozen=True)
class MethodConfig:
    """SSL method; `None` fields take the method's paper defaults and are resolved at load time."""

    name: str = "byol"
    proj_hidden_dim: int | None = None
    proj_output_dim: int | None = None
    pred_hidden_dim: int | None = None
    temperature: float | None = None
    queue_size: int | None = None
    base_tau: float | None = None
    final_tau: float | None = None
    lambda_offdiag: float | None = None
    scale: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 10.0
    batch_size: int = 256
    seed: int = 0
    optimizer: str = "lars"
    lr: float = 1.0
    weight_decay: float = 1e-5
    momentum: float = 0.9
    eta: float = 0.02
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    log_every: int = 10
    progress: bool = True
    sync_bn: bool = False  # torchrun on CUDA: BatchNorm statistics over the global batch
    global_augment: bool = False  # torchrun: every process augments the whole global batch (views of a 1-process run)
    loggers: str = ""  # comma-separated live loggers beside metrics.jsonl: tensorboard, wandb


@dataclass(frozen=True)
class SparsityConfig:
    algorithm: str = "synccp"  # what `synccp pretrain` runs with no arguments, and any TOML without it
    granularity: str = "unstructured"
    density: float = 0.1
    initial_density: float = 1.0
    density_gap: float = 0.1
    n: int = 2
    m: int = 4
    block_out: int = 4
    block_in: int = 4
    allocation: str = "global"
    score_ema: float = 0.0
    update_every: int = 50
    # The density ramp (gmp, granet, synccp): fractions of train.epochs, or absolute epochs
    # (start_epoch/end_epoch win when set; setting both forms of one end is an error).
    ramp_start: float | None = None  # default 0.0 (sparsity.schedule.DEFAULT_RAMP)
    ramp_end: float | None = None  # default 0.75
    start_epoch: float | None = None
    end_epoch: float | None = None
    drop_fraction: float | None = None  # drop-and-grow: RigL 0.3, GraNet 0.5 (their papers' defaults)
    regrow_end: float | None = None  # fraction of training where drop-and-grow stops: RigL 0.75, GraNet 1.0
    sparse_branch: str = "second"


@dataclass(frozen=True)
class EvalConfig:
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_epochs: int = 100
    linear_lr: float = 0.1
    linear_batch_size: int = 512
    raw_baseline: bool = True
    subset: int = 0  # probe on the first N train and test images (0 = the full protocol)
    batch_size: int = 1024  # images per feature-extraction batch


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


from synccp.sparsity.granularity import GRANULARITIES  # noqa: E402 (torch-free)
from synccp.sparsity.registry import ALGORITHMS  # noqa: E402 (torch-free)

LOGGERS = ("tensorboard", "wandb")  # train.loggers: synccp.results.loggers

CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": ("fashion_mnist", "cifar10", "cifar100", "stl10", "image_folder", "imagenet", "imagenet100"),
    "data.on_corrupt": ("error", "skip"),
    "model.backbone": ("resnet18", "resnet34", "resnet50"),
    "model.stem": ("cifar", "imagenet"),
    "method.name": ("simclr", "mocov2", "byol", "barlow", "simsiam"),
    "train.optimizer": ("sgd", "lars"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16"),
    "sparsity.algorithm": ALGORITHMS,  # the registry's rows (synccp.sparsity.registry)
    "sparsity.granularity": GRANULARITIES,  # the registry's rows (synccp.sparsity.granularity)
    "sparsity.allocation": ("global", "uniform", "erk"),
    "sparsity.sparse_branch": ("online", "second"),
}


def _bad(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{key} {why}, got {value!r}")


def _check_ranges(cfg: Config) -> None:
    """Value checks that need more than a type: name the key and the value."""
    s, t, d = cfg.sparsity, cfg.train, cfg.data
    for key, value in (("sparsity.density", s.density), ("sparsity.initial_density", s.initial_density)):
        if not 0.0 < value <= 1.0:
            raise _bad(key, value, "must be in (0, 1]")
    if not 0.0 <= s.density_gap < 1.0:
        raise _bad("sparsity.density_gap", s.density_gap, "must be in [0, 1)")
    if s.initial_density < s.density:
        raise ConfigError(
            f"sparsity.initial_density must be >= sparsity.density, "
            f"got initial_density={s.initial_density}, density={s.density}")
    if not 1 <= s.n < s.m:
        raise ConfigError(f"sparsity.n must be in [1, sparsity.m), got n={s.n}, m={s.m}")
    if not 0.0 <= s.score_ema < 1.0:
        raise _bad("sparsity.score_ema", s.score_ema, "must be in [0, 1)")
    if s.drop_fraction is not None and not 0.0 <= s.drop_fraction < 1.0:
        raise _bad("sparsity.drop_fraction", s.drop_fraction, "must be in [0, 1)")
    if s.regrow_end is not None and not 0.0 < s.regrow_end <= 1.0:
        raise _bad("sparsity.regrow_end", s.regrow_end, "must be in (0, 1] (a fraction of train.epochs)")
    positive = {"sparsity.update_every": s.update_every, "sparsity.block_out": s.block_out,
                "sparsity.block_in": s.block_in, "train.batch_size": t.batch_size,
                "train.epochs": t.epochs, "train.lr": t.lr, "model.width": cfg.model.width,
                "train.log_every": t.log_every, "eval.knn_k": cfg.eval.knn_k,
                "eval.linear_epochs": cfg.eval.linear_epochs, "eval.linear_lr": cfg.eval.linear_lr,
                "eval.knn_temperature": cfg.eval.knn_temperature,
                "eval.linear_batch_size": cfg.eval.linear_batch_size,
                "eval.batch_size": cfg.eval.batch_size}
    for key, value in positive.items():
        if not value > 0:
            raise _bad(key, value, "must be > 0")
    for key, value in (("data.subset", d.subset), ("data.image_size", d.image_size), ("eval.subset", cfg.eval.subset),
                       ("data.workers", d.workers),
                       ("train.weight_decay", t.weight_decay), ("train.warmup_epochs", t.warmup_epochs),
                       ("train.min_lr", t.min_lr)):
        if value < 0:
            raise _bad(key, value, "must be >= 0")
    _check_ramp(cfg)
    _check_gap(cfg)
    _check_sparse_branch(cfg)
    if not 0.0 <= t.momentum < 1.0:
        raise _bad("train.momentum", t.momentum, "must be in [0, 1)")
    unknown = [name for name in t.loggers.split(",") if name.strip() not in ("", *LOGGERS)]
    if unknown:
        raise _bad("train.loggers", t.loggers, f"lists unknown logger(s) {unknown} (known: {', '.join(LOGGERS)})")


def _check_ramp(cfg: Config) -> None:
    """The ramp keys, checked only for algorithms that have a ramp (a dense run ignores them)."""
    from synccp.sparsity.schedule import ramp_epochs

    s, epochs = cfg.sparsity, cfg.train.epochs
    for fraction, absolute in (("ramp_start", "start_epoch"), ("ramp_end", "end_epoch")):
        if getattr(s, fraction) is not None and getattr(s, absolute) is not None:
            raise ConfigError(f"set sparsity.{fraction} (a fraction of train.epochs) or sparsity.{absolute} "
                              f"(in epochs), not both; got {fraction}={getattr(s, fraction)}, "
                              f"{absolute}={getattr(s, absolute)}")
        value = getattr(s, fraction)
        if value is not None and not 0.0 <= value <= 1.0:
            raise _bad(f"sparsity.{fraction}", value, "must be in [0, 1] (a fraction of train.epochs)")
    from synccp.sparsity import policy_for

    if not policy_for(s.algorithm).has_ramp:  # the algorithm's row says whether it has a ramp
        return
    start, end = ramp_epochs(start_epoch=s.start_epoch, end_epoch=s.end_epoch, ramp_start=s.ramp_start,
                             ramp_end=s.ramp_end, epochs=epochs)
    if not 0.0 <= start <= end <= epochs:
        given = ", ".join(f"sparsity.{key}={getattr(s, key)}" for key in
                          ("start_epoch", "end_epoch", "ramp_start", "ramp_end") if getattr(s, key) is not None)
        raise ConfigError(f"the density ramp of sparsity.algorithm={s.algorithm!r} must lie in [0, train.epochs]"
                          f" with start <= end, got start={start:g}, end={end:g} epochs of train.epochs="
                          f"{epochs:g} ({given or 'the default ramp'})")


def _check_gap(cfg: Config) -> None:
    """SyncCP's second branch keeps density + Δ: Δ may reach 1 − density (a dense second branch,
    SDCLR's geometry) but not beyond, where the gap would be silently cut."""
    from synccp.sparsity.registry import policy_for

    s = cfg.sparsity
    final = s.n / s.m if s.granularity == "nm" else s.density
    if policy_for(s.algorithm).uses_gap and final + s.density_gap > 1.0 + 1e-9:
        raise ConfigError(f"sparsity.density_gap={s.density_gap} with a final density of {final:g} asks the "
                          f"second branch for {final + s.density_gap:g} > 1; use at most {1 - final:g} "
                          f"(= 1 - density: a dense second branch)")


def _check_sparse_branch(cfg: Config) -> None:
    """SDCLR on a momentum method prunes the target (sparsity.sparsity.checks.check_branch_rule)."""
    from synccp.methods import METHODS
    from synccp.sparsity import checks, policy_for

    s = cfg.sparsity
    try:
        checks.check_branch_rule(policy_for(s.algorithm), algorithm=s.algorithm,
                                 shared=METHODS[cfg.method.name].shared_encoder, sparse_branch=s.sparse_branch)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check `value` against a dataclass field annotation; ints are accepted where floats are."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            return float(value)
        if kind is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(k, "__name__", str(k)) for k in allowed if k is not type(None))
    raise ConfigError(f"{key} must be {names}, got {value!r} ({type(value).__name__})")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """`typing.get_type_hints(cls)`, once per class (it is slow: a sweep resolves thousands of cells)."""
    return typing.get_type_hints(cls)


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table, got {values!r}")
    hints = _type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{section}.{name}"
        if name not in known:
            raise ConfigError(f"unknown config key {key!r} (known in [{section}]: {', '.join(sorted(known))})")
        kwargs[name] = _coerce(key, value, hints[name])
        if key in CHOICES and kwargs[name] not in CHOICES[key]:
            raise ConfigError(f"{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a `Config` from nested dicts (TOML / JSON shape)."""
    sections = {f.name: _type_hints(Config)[f.name] for f in dataclasses.fields(Config)}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)} (known: {', '.join(sections)})")
    cfg = Config(**{name: _build_section(name, cls, raw.get(name, {})) for name, cls in sections.items()})
    _check_ranges(cfg)
    cfg = _resolve_method_defaults(cfg)
    from synccp.limits import check_sizes  # size-like keys and totals (issue 16)

    check_sizes(cfg)
    return cfg


def _resolve_method_defaults(cfg: Config) -> Config:
    """Fill `None` method fields with the chosen method's defaults (methods.method_defaults)."""
    from synccp.methods import method_defaults

    defaults = method_defaults(cfg.method.name)
    filled = {f.name: defaults.get(f.name) for f in dataclasses.fields(MethodConfig)
              if getattr(cfg.method, f.name) is None}
    return dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, **filled))


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `section.key=value`; the value is read as a TOML literal, else kept as a string."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    path = key.split(".")
    if len(path) != 2 or not all(path):
        raise ConfigError(f"--set key must look like section.key, got {key!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Load a TOML file or a run's `config.json` (or the embedded default when `path` is None)
    and apply `--set` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        raw = _read_config_file(path)
        try:
            return apply_overrides(raw, overrides)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}" if not overrides else f"{path} with --set: {err}") from None
    return apply_overrides(default_config_dict(), overrides)


def apply_overrides(raw: dict[str, Any], overrides: list[str] = ()) -> Config:
    """`raw` (TOML / config.json shape) with `--set key=value` overrides, built and validated."""
    raw = {section: dict(table) if isinstance(table, dict) else table for section, table in raw.items()}
    for text in overrides:
        (section, name), value = parse_override(text)
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table, got {table!r}")
        table[name] = value
        other = EXCLUSIVE.get(f"{section}.{name}")
        if other is not None:  # an override of one form of a ramp end replaces the file's other form
            table.pop(other.split(".", 1)[1], None)
    return config_from_dict(raw)


# Two ways to give one end of the ramp: the later (an override) replaces the earlier (the file).
EXCLUSIVE = {"sparsity.start_epoch": "sparsity.ramp_start", "sparsity.ramp_start": "sparsity.start_epoch",
             "sparsity.end_epoch": "sparsity.ramp_end", "sparsity.ramp_end": "sparsity.end_epoch"}


def default_config_dict() -> dict[str, Any]:
    """The embedded default run (`synccp pretrain` with no arguments): see configs/default.toml."""
    from importlib import resources

    text = resources.files("synccp").joinpath("default.toml").read_text()
    return tomllib.loads(text)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# Keys removed from the config, with the value under which a stored run behaved as runs do
# today (train.compile was never implemented: False was its only honest value).
REMOVED_KEYS: dict[str, Any] = {"train.compile": False}


def normalized_config_dict(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored `config.json` as this version resolves it: keys added since it was written take
    their defaults and removed keys holding their no-op value are dropped, so an older run still
    compares equal to the same run today. Input that no longer validates is returned unchanged
    (it then differs, and the caller says where)."""
    raw = _drop_removed(raw)
    try:
        return config_to_dict(config_from_dict(raw))
    except ConfigError:
        return raw


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")


def load_resolved(path: str | Path) -> Config:
    """Read a run directory's `config.json` back into a `Config` (errors name the file)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist: not a synccp run directory")
    raw = _read_config_file(path)
    try:
        return config_from_dict(_drop_removed(raw))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    """A TOML file, or a run's `config.json` (`.json`): a table of sections, or `ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except OSError as err:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of sections, got {type(raw).__name__}")
    return _drop_removed(raw) if path.suffix == ".json" else raw


def _drop_removed(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` without the `REMOVED_KEYS` that hold their no-op value (older config.json files)."""
    raw = {section: dict(table) if isinstance(table, dict) else table for section, table in raw.items()}
    for dotted, harmless in REMOVED_KEYS.items():
        section, key = dotted.split(".", 1)
        table = raw.get(section)
        if isinstance(table, dict) and key in table and table[key] == harmless:
            del table[key]
    return raw
