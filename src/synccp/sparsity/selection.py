"""Which weights of a module are prunable: the default rule and a user's filter.

DESIGN.md §1: "Prunable layers: every conv and linear weight of the backbone except the stem
conv; projector/predictor heads stay dense by default." For an arbitrary module the stem is the
first convolution in module order and the heads are the last `nn.Linear` (a classifier) and
every module inside a child named like a head (`HEAD_NAMES`). Biases and norms never count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn

HEAD_NAMES = ("projector", "predictor", "head", "heads", "classifier")
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
Include = Callable[[str, nn.Module], bool]  # (qualified module name, module) -> prunable?


def default_include(model: nn.Module) -> Include:
    """The default rule for `model`: a Conv/Linear that is not the stem, the last Linear, or
    inside a head."""
    layers = [(name, module) for name, module in model.named_modules()
              if isinstance(module, LAYERS)]
    convs = [name for name, module in layers if not isinstance(module, nn.Linear)]
    linears = [name for name, module in layers if isinstance(module, nn.Linear)]
    excluded = {convs[0]} if convs else set()
    if linears:
        excluded.add(linears[-1])

    def include(name: str, module: nn.Module) -> bool:
        in_head = any(part in HEAD_NAMES for part in name.split("."))
        return name not in excluded and not in_head

    return include


def prunable_weights(model: nn.Module, include: Include | None = None) -> dict[str, nn.Parameter]:
    """`{"<module name>.weight": weight}` of every Conv/Linear layer `include` accepts (default:
    `default_include(model)`), in module order. ValueError when none is left."""
    rule = default_include(model) if include is None else include
    weights = {f"{name}.weight": module.weight for name, module in model.named_modules()
               if isinstance(module, LAYERS) and rule(name, module)}
    if not weights:
        raise ValueError(f"no prunable Conv/Linear weight in {type(model).__name__} (the default "
                         f"rule leaves the first conv, the last Linear and {'/'.join(HEAD_NAMES)} "
                         f"dense); pass include=lambda name, module: ... to choose")
    return weights


def matching_weights(target: nn.Module, online: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The target module's weights with the online names (a momentum target: same structure)."""
    params = dict(target.named_parameters())
    missing = [name for name in online if name not in params]
    if missing:
        raise ValueError(f"target has no parameter(s) {missing[:3]} of the online module: the EMA "
                         f"target must be a copy of the online module")
    return {name: params[name] for name in online}
