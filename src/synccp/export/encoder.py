"""`synccp.load_encoder(path)`: a ready `nn.Module` from an exported file alone."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from synccp.export.metadata import read_metadata
from synccp.models import build_backbone

KEPT_FEATURES = "kept_features"  # compact exports: which of the out_dim features the trunk computes


class CompactEncoder(nn.Module):
    """A channel-compacted trunk whose (B, k) features are scattered back into (B, out_dim).

    Features of the removed residual channels are identically zero in the dense encoder, so the
    output equals the dense encoder's."""

    def __init__(self, trunk: nn.Module, kept_features: Tensor, out_dim: int):
        super().__init__()
        self.trunk = trunk
        self.register_buffer(KEPT_FEATURES, kept_features.to(torch.int64))
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        kept = self.trunk(x)  # (B, k)
        out = kept.new_zeros(kept.shape[0], self.out_dim)  # (B, D)
        return out.index_copy(1, self.kept_features, kept)


def resize_to(module: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    """Replace every conv / BatchNorm of `module` whose shape differs from `state` by one of the
    stored shape (compact exports); the caller then loads `state` strictly."""
    for name, child in list(module.named_modules()):
        weight = state.get(f"{name}.weight")
        if weight is None or tuple(weight.shape) == tuple(child.weight.shape):
            continue
        if isinstance(child, nn.Conv2d):
            new: nn.Module = nn.Conv2d(weight.shape[1], weight.shape[0], child.kernel_size,
                                       stride=child.stride, padding=child.padding,
                                       bias=child.bias is not None)
        elif isinstance(child, nn.BatchNorm2d):
            new = nn.BatchNorm2d(weight.shape[0], eps=child.eps, momentum=child.momentum)
        else:
            raise ValueError(
                f"{name}: cannot resize a {type(child).__name__} to {tuple(weight.shape)}"
            )
        parent_name, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attr, new)
    return module


def load_encoder(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Build the encoder an exported `model.safetensors` (or compact export) describes, load its
    weights strictly and return it in eval mode: (B, C, S, S) normalized images → (B, out_dim).

    The file's ``synccp.encoder`` metadata gives architecture, stem, width, input channels,
    image size and the normalisation (`synccp.encoder_metadata(path)` returns it); pruned entries
    are exactly zero in the returned module."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    spec, _ = read_metadata(path)
    state = load_file(str(path))
    model = build_backbone(
        spec["architecture"],
        stem=spec["stem"],
        width=spec["width"],
        in_channels=spec["in_channels"],
    )
    kept = state.pop(KEPT_FEATURES, None)
    if kept is not None:
        resize_to(model, state)
    model.load_state_dict(state, strict=True)
    if kept is not None:
        model = CompactEncoder(model, kept, spec["out_dim"])
    return model.to(device).eval()
