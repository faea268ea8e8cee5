"""The five SSL methods behind one contract (`SSLMethod`), built by name.

`method_defaults(name)` lists every keyword argument of a method with its default: solo-learn's
CIFAR recipes (`scripts/pretrain/cifar/*.yaml` in vturrisi/solo-learn); each method's module
docstring cites its file and says where we differ.
"""

from __future__ import annotations

import inspect

from torch import nn

from synccp.methods.barlow import BarlowTwins
from synccp.methods.base import Encode, MomentumMethod, SSLMethod
from synccp.methods.byol import BYOL
from synccp.methods.mocov2 import MoCoV2
from synccp.methods.simclr import SimCLR
from synccp.methods.simsiam import SimSiam

METHODS: dict[str, type[SSLMethod]] = {
    cls.name: cls for cls in (SimCLR, MoCoV2, BYOL, BarlowTwins, SimSiam)
}


def _method_class(name: str) -> type[SSLMethod]:
    if name not in METHODS:
        raise ValueError(f"method.name must be one of {', '.join(METHODS)}; got {name!r}")
    return METHODS[name]


def method_defaults(name: str) -> dict:
    """Every keyword argument of method `name` with its default value."""
    signature = inspect.signature(_method_class(name).__init__)
    return {key: p.default for key, p in signature.parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build_method(name: str, backbone: nn.Module, **method_kwargs) -> SSLMethod:
    """Method `name` around `backbone` (which needs `.out_dim`); unknown kwargs are an error."""
    unknown = sorted(set(method_kwargs) - set(method_defaults(name)))
    if unknown:
        raise TypeError(f"method {name!r} has no option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(method_defaults(name))}")
    return _method_class(name)(backbone, **method_kwargs)


__all__ = ["METHODS", "BYOL", "BarlowTwins", "Encode", "MoCoV2", "MomentumMethod", "SSLMethod",
           "SimCLR", "SimSiam", "build_method", "method_defaults"]
