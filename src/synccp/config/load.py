"""Reading a `Config`: TOML files, a run's `config.json`, `--set key=value` overrides.

Unknown keys, wrong types and out-of-range values fail at load time with a `ConfigError` that
names the key and the value.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synccp.config.checks import check_config, check_method_options
from synccp.config.schema import CHOICES, Config, ConfigError, MethodConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, packaged (a dependency there, see pyproject.toml)
    import tomli as tomllib

LOG = logging.getLogger(__name__)

def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check `value` against a dataclass field annotation; ints are accepted where floats are."""
    allowed = (
        typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    )
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
    """`typing.get_type_hints(cls)`, once per class (slow: a sweep resolves thousands of cells)."""
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
            raise ConfigError(
                f"unknown config key {key!r} (known in [{section}]: {', '.join(sorted(known))})"
            )
        kwargs[name] = _coerce(key, value, hints[name])
        if key in CHOICES and kwargs[name] not in CHOICES[key]:
            raise ConfigError(f"{key} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a `Config` from nested dicts (TOML / JSON shape)."""
    sections = {f.name: _type_hints(Config)[f.name] for f in dataclasses.fields(Config)}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(
            f"unknown config section(s) {sorted(unknown)} (known: {', '.join(sections)})"
        )
    cfg = Config(
        **{name: _build_section(name, cls, raw.get(name, {})) for name, cls in sections.items()}
    )
    check_config(cfg)
    cfg = _resolve_method_defaults(cfg)
    check_method_options(cfg.method)
    # optimizer steps and mask updates (issue 16)
    from synccp.config.limits import check_known_totals

    check_known_totals(cfg)
    return cfg


def _resolve_method_defaults(cfg: Config) -> Config:
    """Fill `None` method fields with the chosen method's defaults (methods.method_defaults)."""
    from synccp.methods import method_defaults

    defaults = method_defaults(cfg.method.name)
    filled: dict[str, Any] = {
        f.name: defaults.get(f.name)
        for f in dataclasses.fields(MethodConfig)
        if getattr(cfg.method, f.name) is None
    }
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


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
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
            raise ConfigError(
                f"{path}: {err}" if not overrides else f"{path} with --set: {err}"
            ) from None
    return apply_overrides(default_config_dict(), overrides)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """`raw` (TOML / config.json shape) with `--set key=value` overrides, built and validated."""
    raw = {
        section: dict(table) if isinstance(table, dict) else table for section, table in raw.items()
    }
    for text in overrides:
        (section, name), value = parse_override(text)
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table, got {table!r}")
        table[name] = value
        other = EXCLUSIVE.get(f"{section}.{name}")
        if (
            other is not None
        ):  # an override of one form of a ramp end replaces the file's other form
            table.pop(other.split(".", 1)[1], None)
    return config_from_dict(raw)


# Two ways to give one end of the ramp: the later (an override) replaces the earlier (the file).
EXCLUSIVE = {
    "sparsity.start_epoch": "sparsity.ramp_start",
    "sparsity.ramp_start": "sparsity.start_epoch",
    "sparsity.end_epoch": "sparsity.ramp_end",
    "sparsity.ramp_end": "sparsity.end_epoch",
}


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
        raise ConfigError(
            f"config file {str(path)!r} cannot be read: {err.strerror or err}"
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"config file {str(path)!r} is not valid JSON: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a table of sections, got {type(raw).__name__}"
        )
    return _drop_removed(raw) if path.suffix == ".json" else raw


def _drop_removed(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` as a stored run wrote it, read by this version: without the `REMOVED_KEYS` that hold
    their no-op value, and without keys of another method (older versions accepted and stored
    them unused; a user who sets one gets an error, a stored run a warning)."""
    raw = {
        section: dict(table) if isinstance(table, dict) else table for section, table in raw.items()
    }
    for dotted, harmless in REMOVED_KEYS.items():
        section, key = dotted.split(".", 1)
        table = raw.get(section)
        if isinstance(table, dict) and key in table and table[key] == harmless:
            del table[key]
    from synccp.methods.rows import METHODS, foreign_options

    method = raw.get("method")
    if isinstance(method, dict) and method.get("name", MethodConfig.name) in METHODS:
        name = method.get("name", MethodConfig.name)
        options = {k: v for k, v in method.items() if k != "name"}
        for key in foreign_options(name, options):
            LOG.warning(
                "method.%s=%r of a stored run is not an option of method.name=%r: "
                "ignored (it never had an effect)",
                key,
                method[key],
                name,
            )
            del method[key]
    return raw
