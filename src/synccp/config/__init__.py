"""The one configuration schema: frozen dataclasses, TOML files and `--set key=value` overrides.

Every user-facing key lives in `schema` (DESIGN.md §3); `load` reads files, stored runs and
overrides into it; `checks` validates it (one table of ranges). Unknown keys, keys of another
method, wrong types and out-of-range values fail at load time with a `ConfigError` that names the
key and the value. Only the boundary (CLI, sweep, the run directory's reader) imports this
package: the library below it receives specs (`synccp.specs`).
"""

from synccp.config.checks import RANGES
from synccp.config.load import (
    EXCLUSIVE,
    REMOVED_KEYS,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    default_config_dict,
    load_config,
    load_resolved,
    normalized_config_dict,
    parse_override,
    save_config,
    tomllib,
)
from synccp.config.schema import (
    CHOICES,
    LOGGERS,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    MethodConfig,
    ModelConfig,
    SparsityConfig,
    TrainConfig,
)

__all__ = ["CHOICES", "EXCLUSIVE", "LOGGERS", "RANGES", "REMOVED_KEYS", "Config", "ConfigError",
           "DataConfig", "EvalConfig", "MethodConfig", "ModelConfig", "SparsityConfig",
           "TrainConfig", "apply_overrides", "config_from_dict", "config_to_dict",
           "default_config_dict", "load_config", "load_resolved", "normalized_config_dict",
           "parse_override", "save_config", "tomllib"]
