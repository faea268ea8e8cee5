"""The GEMMs of one training step: every conv and linear call, per branch, view and phase.

A conv of weight (C_out, C_in, kh, kw) on a batch of B images with H_o×W_o output positions is,
in im2col form, three GEMMs C[m×n] = A[m×k]·B[k×n] (n is the dimension spread over PE columns):

- forward  Y  = X_col · Wᵀ : m = B·H_o·W_o, n = C_out,         k = C_in·kh·kw
- dgrad    dX_col = dY · W  : m = B·H_o·W_o, n = C_in·kh·kw,    k = C_out   (then col2im, adds only)
- wgrad    dWᵀ = X_colᵀ · dY: m = C_in·kh·kw, n = C_out,        k = B·H_o·W_o

A linear layer is the 1×1 case with H_o·W_o = 1. All three have the same m·n·k MACs, which is
what `torch.utils.flop_counter` counts for `convolution_backward` / `mm` (tests check parity).
The stem conv has no dgrad: nothing upstream of the image needs a gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from synccp.methods.rows import EncoderPass, method_row

PHASES = ("forward", "dgrad", "wgrad")


@dataclass(frozen=True)
class Gemm:
    """C[m×n] = A[m×k]·B[k×n]: m rows streamed, n output columns, k the reduction."""

    m: int
    n: int
    k: int

    @property
    def macs(self) -> int:
        return self.m * self.n * self.k


@dataclass(frozen=True)
class Layer:
    """One conv or linear call, traced at batch 1.

    `name` is the weight parameter's qualified name (`layer1.0.conv1.weight`; heads are prefixed
    with their part, `projector.0.weight`). `positions` = output positions per sample (H_o·W_o,
    1 for a linear on (B, D)); `in_elems` / `out_elems` = activation elements per sample.
    """

    name: str
    weight_shape: tuple[int, ...]
    positions: int
    in_elems: int
    out_elems: int
    part: str = "backbone"
    first: bool = False

    @property
    def out_features(self) -> int:
        return self.weight_shape[0]

    @property
    def reduction(self) -> int:
        """k of the forward GEMM: C_in·kh·kw."""
        return math.prod(self.weight_shape[1:])

    @property
    def numel(self) -> int:
        return math.prod(self.weight_shape)


Pass = EncoderPass  # one encoder pass of a step: the method row's (synccp.methods.rows)


def phase_gemm(layer: Layer, phase: str, batch: int) -> Gemm:
    """The im2col GEMM of `layer` in `phase` for a batch of `batch` samples (module docstring)."""
    rows = batch * layer.positions
    if phase == "forward":
        return Gemm(rows, layer.out_features, layer.reduction)
    if phase == "dgrad":
        return Gemm(rows, layer.reduction, layer.out_features)
    if phase == "wgrad":
        return Gemm(layer.reduction, layer.out_features, rows)
    raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")


def pass_phases(layer: Layer, training_pass: Pass) -> tuple[str, ...]:
    """Phases `layer` runs in `training_pass`: forward only without backward; no stem dgrad."""
    if not training_pass.backward:
        return ("forward",)
    return ("forward", "wgrad") if layer.first else PHASES


def method_passes(method: str) -> tuple[Pass, ...]:
    """The encoder passes of one step of `method`: its row's (`MethodRow.passes`, DESIGN.md §1)."""
    return method_row(method).passes


def trace_layers(module: nn.Module, input_shape: tuple[int, ...], *, part: str = "backbone",
                 mark_first: bool = True) -> list[Layer]:
    """Every nn.Conv2d / nn.Linear call of `module` on one zero input of `input_shape` (batch 1).

    Runs a real forward under `no_grad` in eval mode (BatchNorm with batch 1), restoring the
    training flag. Layers are returned in call order; with `mark_first`, the first call is the
    stem (no dgrad). Grouped convolutions are rejected: their GEMM is not one im2col GEMM.
    """
    calls: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []

    def hook(name: str):
        def record(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            calls.append((name, mod, tuple(inputs[0].shape), tuple(output.shape)))
        return record

    handles = [mod.register_forward_hook(hook(name)) for name, mod in module.named_modules()
               if isinstance(mod, (nn.Conv2d, nn.Linear))]
    was_training = module.training
    reference = next(module.parameters())
    try:
        module.eval()
        with torch.no_grad():
            shape = (1, *input_shape[1:])
            zeros = torch.zeros(shape, dtype=reference.dtype, device=reference.device)
            module(zeros)
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return [
        _layer(name, mod, shape_in, shape_out, part=part, first=mark_first and i == 0)
        for i, (name, mod, shape_in, shape_out) in enumerate(calls)
    ]


def _layer(
    name: str,
    mod: nn.Module,
    shape_in: tuple[int, ...],
    shape_out: tuple[int, ...],
    *,
    part: str,
    first: bool,
) -> Layer:
    if isinstance(mod, nn.Conv2d) and mod.groups != 1:
        raise ValueError(f"grouped convolution {name!r} (groups={mod.groups}) is not supported")
    weight = f"{name}.weight" if part == "backbone" else f"{part}.{name}.weight"
    if isinstance(mod, nn.Conv2d):
        positions = math.prod(shape_out[2:])  # H_o·W_o
    else:
        positions = math.prod(shape_out[1:-1])  # leading dims of (B, ..., out)
    return Layer(
        weight,
        tuple(mod.weight.shape),
        positions,
        math.prod(shape_in[1:]),
        math.prod(shape_out[1:]),
        part,
        first,
    )


def training_layers(
    backbone: nn.Module,
    *,
    in_channels: int,
    image_size: int,
    heads: dict[str, nn.Module] | None = None,
) -> list[Layer]:
    """Backbone layers (stem marked) followed by the dense head layers (`projector`, `predictor`).

    Head inputs are the backbone feature dimension (`backbone.out_dim`, else traced) and, for the
    predictor, the projector's output dimension.
    """
    layers = trace_layers(backbone, (1, in_channels, image_size, image_size))
    dim = int(getattr(backbone, "out_dim", 0)) or _feature_dim(backbone, in_channels, image_size)
    for part in ("projector", "predictor"):
        head = (heads or {}).get(part)
        if head is None:
            continue
        traced = trace_layers(head, (1, dim), part=part, mark_first=False)
        layers += traced
        dim = traced[-1].out_features
    return layers


def _feature_dim(backbone: nn.Module, in_channels: int, image_size: int) -> int:
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            reference = next(backbone.parameters())
            x = torch.zeros(
                1,
                in_channels,
                image_size,
                image_size,
                dtype=reference.dtype,
                device=reference.device,
            )
            return int(backbone(x).shape[-1])
    finally:
        backbone.train(was_training)
