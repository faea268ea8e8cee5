"""One row per SSL method: everything synccp knows about a method, in one place.

A row names the method's module class (its keyword-only arguments are the method's own config keys,
with solo-learn's CIFAR defaults), whether it shares one encoder between the branches or keeps an
EMA target, the augmentation of each of its two views (`synccp.data.views.AUGMENTATIONS`), and the
encoder passes of one training step (what `synccp.cost` counts). Adding a method is adding a row.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from synccp.methods.barlow import BarlowTwins
from synccp.methods.base import SSLMethod
from synccp.methods.byol import BYOL
from synccp.methods.mocov2 import MoCoV2
from synccp.methods.simclr import SimCLR
from synccp.methods.simsiam import SimSiam

HEADS = ("backbone", "projector", "predictor")


@dataclass(frozen=True)
class EncoderPass:
    """One encoder pass of a step: which mask (`branch`), which view, whether it backpropagates."""

    branch: str
    view: str
    backward: bool
    parts: tuple[str, ...]


# Shared encoder: view a through the online mask, view b through the second mask, both with
# backward through backbone and heads.
SHARED_PASSES = (EncoderPass("online", "a", True, HEADS), EncoderPass("second", "b", True, HEADS))
# Momentum: the online encoder (backbone, projector, predictor) on both views with backward; the EMA
# target (backbone + target projector, second mask) on both views, forward only.
MOMENTUM_PASSES = (
    EncoderPass("online", "a", True, HEADS),
    EncoderPass("online", "b", True, HEADS),
    EncoderPass("second", "a", False, ("backbone", "projector")),
    EncoderPass("second", "b", False, ("backbone", "projector")),
)


@dataclass(frozen=True)
class MethodRow:
    """An SSL method: its class, its views and its passes; `options` are its own config keys."""

    name: str
    cls: type[SSLMethod]
    views: tuple[str, str]  # names in synccp.data.views.AUGMENTATIONS: view a, view b

    @property
    def shared_encoder(self) -> bool:
        """True: one weight tensor seen through two masks; False: an EMA target ξ."""
        return bool(self.cls.shared_encoder)

    @property
    def options(self) -> dict[str, Any]:
        """Every keyword argument of the method (its `method.*` config keys) with its default."""
        signature = inspect.signature(self.cls.__init__)
        return {
            key: p.default
            for key, p in signature.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    @property
    def passes(self) -> tuple[EncoderPass, ...]:
        """The encoder passes of one optimizer step (DESIGN.md §1)."""
        return SHARED_PASSES if self.shared_encoder else MOMENTUM_PASSES


ROWS = (
    MethodRow("simclr", SimCLR, views=("symmetric", "symmetric")),
    MethodRow("mocov2", MoCoV2, views=("symmetric_weak", "symmetric_weak")),
    MethodRow("byol", BYOL, views=("asymmetric", "asymmetric_solarized")),
    MethodRow("barlow", BarlowTwins, views=("asymmetric", "asymmetric_solarized")),
    MethodRow("simsiam", SimSiam, views=("symmetric_weak", "symmetric_weak")),
)
METHODS: dict[str, MethodRow] = {row.name: row for row in ROWS}


def method_row(name: str) -> MethodRow:
    """The row of method `name`; ValueError naming the known methods otherwise."""
    if name not in METHODS:
        raise ValueError(f"method.name must be one of {', '.join(METHODS)}; got {name!r}")
    return METHODS[name]


def foreign_options(name: str, options: dict[str, Any]) -> list[str]:
    """The keys of `options` (set, i.e. not None) that are not options of method `name`."""
    own = method_row(name).options
    return sorted(key for key, value in options.items() if value is not None and key not in own)
