"""The five SSL methods behind one contract (`SSLMethod`), one row each (`rows.METHODS`).

`method_defaults(name)` lists every keyword argument of a method with its default: solo-learn's
CIFAR recipes (`scripts/pretrain/cifar/*.yaml` in vturrisi/solo-learn); each method's module
docstring cites its file and says where we differ.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from synccp.data import views
from synccp.methods.barlow import BarlowTwins
from synccp.methods.base import Encode, MomentumMethod, SSLMethod
from synccp.methods.byol import BYOL
from synccp.methods.mocov2 import MoCoV2
from synccp.methods.rows import METHODS, EncoderPass, MethodRow, foreign_options, method_row
from synccp.methods.simclr import SimCLR
from synccp.methods.simsiam import SimSiam


def method_defaults(name: str) -> dict[str, Any]:
    """Every keyword argument of method `name` with its default value."""
    return method_row(name).options


def view_recipes(name: str, *, image_size: int,
                 channels: int) -> tuple[views.ViewRecipe, views.ViewRecipe]:
    """The two view recipes of method `name` (its row's augmentations), crops of `image_size`."""
    return views.view_recipes(method_row(name).views, image_size=image_size, channels=channels)


def build_method(name: str, backbone: nn.Module, **method_kwargs) -> SSLMethod:
    """Method `name` around `backbone` (which needs `.out_dim`); unknown kwargs are an error."""
    unknown = sorted(set(method_kwargs) - set(method_defaults(name)))
    if unknown:
        raise TypeError(f"method {name!r} has no option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(method_defaults(name))}")
    return method_row(name).cls(backbone, **method_kwargs)


__all__ = ["METHODS", "BYOL", "BarlowTwins", "Encode", "EncoderPass", "MethodRow", "MoCoV2",
           "MomentumMethod", "SSLMethod", "SimCLR", "SimSiam", "build_method", "foreign_options",
           "method_defaults", "method_row", "view_recipes"]
