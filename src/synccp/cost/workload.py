"""What one optimizer step of a run computes: traced layers, encoder passes, per-view batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from synccp.cost.gemms import Layer, Pass, method_passes, training_layers
from synccp.cost.timeline import image_geometry
from synccp.specs import RunSpec


@dataclass(frozen=True)
class Workload:
    """What one optimizer step runs: traced layers, encoder passes and the per-view batch."""

    method: str
    batch: int
    layers: tuple[Layer, ...]
    passes: tuple[Pass, ...]

    @property
    def prunable(self) -> dict[str, tuple[int, ...]]:
        """Backbone weights that carry masks: every conv/linear except the stem."""
        return {layer.name: layer.weight_shape for layer in self.layers
                if layer.part == "backbone" and not layer.first}


def build_workload(spec: RunSpec, *, backbone: nn.Module | None = None,
                   heads: dict[str, nn.Module] | None = None) -> Workload:
    """Trace `backbone` + `heads` (built from `spec` by synccp.models / synccp.methods if None)."""
    channels, size = image_geometry(spec)
    if backbone is None:
        backbone, heads = _build_model(spec, channels)
    layers = training_layers(backbone, in_channels=channels, image_size=size, heads=heads)
    return Workload(
        spec.method.name, spec.train.batch_size, tuple(layers), method_passes(spec.method.name)
    )


def _build_model(spec: RunSpec, channels: int) -> tuple[nn.Module, dict[str, nn.Module]]:
    from synccp.methods import build_method
    from synccp.models import build_backbone

    backbone = build_backbone(
        spec.model.backbone, stem=spec.model.stem, width=spec.model.width, in_channels=channels
    )
    method = build_method(spec.method.name, backbone, **spec.method.options)
    heads = {
        part: getattr(method, part)
        for part in ("projector", "predictor")
        if isinstance(getattr(method, part, None), nn.Module)
    }
    return backbone, heads
