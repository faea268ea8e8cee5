"""The one configuration schema: frozen dataclasses, TOML files and `--set key=value` overrides.

Every user-facing key lives here (DESIGN.md §3). Unknown keys, wrong types and out-of-range values
fail at load time with a `ConfigError` that names the key and the value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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


@dataclass(frozen=True)
class SparsityConfig:
    algorithm: str = "dense"
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
    start_epoch: float = 0.0
    end_epoch: float = -1.0
    drop_fraction: float = 0.3
    sparse_branch: str = "second"


@dataclass(frozen=True)
class EvalConfig:
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_epochs: int = 100
    linear_lr: float = 0.1
    linear_batch_size: int = 512
    raw_baseline: bool = True


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


DEFAULT_RAMP_END = 0.75  # sparsity.end_epoch < 0 means this fraction of train.epochs (masks frozen after)

CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": ("fashion_mnist", "cifar10", "cifar100", "stl10", "image_folder", "imagenet", "imagenet100"),
    "data.on_corrupt": ("error", "skip"),
    "model.backbone": ("resnet18", "resnet34", "resnet50"),
    "model.stem": ("cifar", "imagenet"),
    "method.name": ("simclr", "mocov2", "byol", "barlow", "simsiam"),
    "train.optimizer": ("sgd", "lars"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16"),
    "sparsity.algorithm": ("dense", "static", "gmp", "sdclr", "rigl", "granet", "synccp"),
    "sparsity.granularity": ("unstructured", "nm", "block", "channel"),
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
    if not 0.0 <= s.drop_fraction < 1.0:
        raise _bad("sparsity.drop_fraction", s.drop_fraction, "must be in [0, 1)")
    positive = {"sparsity.update_every": s.update_every, "sparsity.block_out": s.block_out,
                "sparsity.block_in": s.block_in, "train.batch_size": t.batch_size,
                "train.epochs": t.epochs, "train.lr": t.lr, "model.width": cfg.model.width,
                "train.log_every": t.log_every, "eval.knn_k": cfg.eval.knn_k,
                "eval.linear_epochs": cfg.eval.linear_epochs, "eval.linear_lr": cfg.eval.linear_lr,
                "eval.knn_temperature": cfg.eval.knn_temperature,
                "eval.linear_batch_size": cfg.eval.linear_batch_size}
    for key, value in positive.items():
        if not value > 0:
            raise _bad(key, value, "must be > 0")
    for key, value in (("data.subset", d.subset), ("data.image_size", d.image_size), ("data.workers", d.workers),
                       ("train.weight_decay", t.weight_decay), ("train.warmup_epochs", t.warmup_epochs),
                       ("train.min_lr", t.min_lr), ("sparsity.start_epoch", s.start_epoch)):
        if value < 0:
            raise _bad(key, value, "must be >= 0")
    end = t.epochs if s.end_epoch < 0 else s.end_epoch
    if end > t.epochs or end < s.start_epoch:
        raise ConfigError(
            f"sparsity.end_epoch must be in [sparsity.start_epoch, train.epochs], got "
            f"end_epoch={s.end_epoch}, start_epoch={s.start_epoch}, epochs={t.epochs}")
    if not 0.0 <= t.momentum < 1.0:
        raise _bad("train.momentum", t.momentum, "must be in [0, 1)")


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


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"[{section}] must be a table, got {values!r}")
    hints = typing.get_type_hints(cls)
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
    sections = {f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)} (known: {', '.join(sections)})")
    cfg = Config(**{name: _build_section(name, cls, raw.get(name, {})) for name, cls in sections.items()})
    _check_ranges(cfg)
    if cfg.sparsity.end_epoch < 0:
        ramp_end = DEFAULT_RAMP_END * cfg.train.epochs
        cfg = dataclasses.replace(cfg, sparsity=dataclasses.replace(cfg.sparsity, end_epoch=ramp_end))
    return _resolve_method_defaults(cfg)


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
    """Load a TOML file (or the embedded default when `path` is None) and apply `--set` overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    else:
        raw = default_config_dict()
    for text in overrides:
        (section, name), value = parse_override(text)
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table, got {table!r}")
        table[name] = value
    return config_from_dict(raw)


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
    raw = {section: dict(table) if isinstance(table, dict) else table for section, table in raw.items()}
    for dotted, harmless in REMOVED_KEYS.items():
        section, key = dotted.split(".", 1)
        table = raw.get(section)
        if isinstance(table, dict) and key in table and table[key] == harmless:
            del table[key]
    try:
        return config_to_dict(config_from_dict(raw))
    except ConfigError:
        return raw


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")


def load_resolved(path: str | Path) -> Config:
    """Read a run directory's `config.json` back into a `Config`."""
    return config_from_dict(json.loads(Path(path).read_text()))
