"""The one builder from a `Config` to the typed specs of a run (`synccp.specs.RunSpec`)."""

from __future__ import annotations

import dataclasses

from synccp.config.load import config_to_dict
from synccp.config.schema import Config
from synccp.specs import MethodSpec, RunSpec, RuntimeSpec, TrainSpec


def _fields(cls: type, values: object) -> dict:
    return {f.name: getattr(values, f.name) for f in dataclasses.fields(cls)}


def run_spec(cfg: Config) -> RunSpec:
    """`cfg` (validated, method defaults filled) as the specs each part of synccp receives."""
    from synccp.methods import method_defaults

    own = method_defaults(cfg.method.name)
    method = MethodSpec(cfg.method.name, {key: getattr(cfg.method, key) for key in own})
    return RunSpec(data=cfg.data, model=cfg.model, method=method,
                   train=TrainSpec(**_fields(TrainSpec, cfg.train)),
                   runtime=RuntimeSpec(**_fields(RuntimeSpec, cfg.train)),
                   sparsity=cfg.sparsity, eval=cfg.eval, record=config_to_dict(cfg))
