"""Channel compaction: physically remove the filters channel sparsity zeroed, with the matching
input channels of the next conv and the BatchNorm entries, wherever the outputs stay the same.

A channel may go only if it is *identically zero* in the dense encoder (eval mode):
- inside a block, an output channel of an inner conv whose filter is zero on the kept inputs
  leaves its BatchNorm as the constant k = β − γ·μ/√(σ²+ε); after the ReLU it is zero iff k ≤ 0.
  A positive k is a constant map that the next 3×3 conv (zero padding) turns into a position-
  dependent signal, so such channels stay;
- on the residual stream of a stage, a channel goes only if it is zero after every block of the
  stage: pruned in every conv that writes it (each block's last conv and the projection shortcut),
  with relu(k_last + k_shortcut) = 0, and not carried in by an identity shortcut.
The stem conv is dense (never pruned), so stage 1's stream stays whole. Pooled features of removed
last-stage channels are zero; `CompactEncoder` scatters the k computed ones back to out_dim.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from synccp.export.encoder import CompactEncoder
from synccp.models.resnet import ResNet


def _bn_constant(bn: nn.BatchNorm2d) -> Tensor:
    """(C,) eval-mode output of `bn` on an all-zero input."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return bn.bias - scale * bn.running_mean


def _zero_filters(conv: nn.Conv2d) -> Tensor:
    """(C_out,) True where the whole filter is zero."""
    return ~conv.weight.flatten(1).ne(0).any(dim=1)


def _dead(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """(C_out,) True where relu(bn(conv(x))) is identically zero."""
    return _zero_filters(conv) & (_bn_constant(bn) <= 0)


def _pairs(block: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) attribute names of `block` in order; the last one writes the residual stream."""
    if hasattr(block, "conv3"):
        return [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")]
    return [("conv1", "bn1"), ("conv2", "bn2")]


def _stage_alive(stage: nn.Sequential, alive_in: Tensor) -> Tensor:
    """(C,) True for the residual-stream channels of `stage` that are nonzero after some block."""
    ever, dead_before = None, ~alive_in
    for block in stage:
        conv, bn = (getattr(block, name) for name in _pairs(block)[-1])
        constant = _bn_constant(bn)  # (C,)
        if block.downsample is not None:  # a projection shortcut writes the stream too
            constant = constant + _bn_constant(block.downsample[1])
            dead = _zero_filters(conv) & _zero_filters(block.downsample[0]) & (constant <= 0)
        else:  # the identity carries the previous stream in
            dead = _zero_filters(conv) & dead_before & (constant <= 0)
        ever = ~dead if ever is None else ever | ~dead
        dead_before = dead
    return ever


def _indices(alive: Tensor) -> Tensor:
    """Indices of the True entries of `alive`, at least one (a conv needs a channel)."""
    kept = alive.nonzero().flatten()
    return kept if len(kept) else torch.zeros(1, dtype=torch.int64)


def _sliced_conv(conv: nn.Conv2d, out_idx: Tensor, in_idx: Tensor) -> nn.Conv2d:
    new = nn.Conv2d(len(in_idx), len(out_idx), conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, bias=False)
    new.weight.data.copy_(conv.weight.data[out_idx][:, in_idx])
    return new


def _sliced_bn(bn: nn.BatchNorm2d, idx: Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias"):
        getattr(new, name).data.copy_(getattr(bn, name).data[idx])
    for name in ("running_mean", "running_var"):
        getattr(new, name).copy_(getattr(bn, name)[idx])
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _compact_block(block: nn.Module, in_idx: Tensor, stream_idx: Tensor) -> None:
    kept = in_idx
    pairs = _pairs(block)
    for position, (conv_name, bn_name) in enumerate(pairs):
        conv, bn = getattr(block, conv_name), getattr(block, bn_name)
        out_idx = stream_idx if position == len(pairs) - 1 else _indices(~_dead(conv, bn))
        setattr(block, conv_name, _sliced_conv(conv, out_idx, kept))
        setattr(block, bn_name, _sliced_bn(bn, out_idx))
        kept = out_idx
    if block.downsample is not None:
        block.downsample[0] = _sliced_conv(block.downsample[0], stream_idx, in_idx)
        block.downsample[1] = _sliced_bn(block.downsample[1], stream_idx)


@torch.no_grad()
def compact_encoder(backbone: ResNet) -> CompactEncoder:
    """A smaller dense copy of `backbone` (eval mode) with its identically-zero channels removed;
    same outputs as `backbone.eval()` up to float summation order."""
    trunk = copy.deepcopy(backbone).eval()
    idx = _indices(~_dead(trunk.conv1, trunk.bn1))  # the stem is dense: normally every channel
    trunk.conv1 = _sliced_conv(trunk.conv1, idx, torch.arange(trunk.conv1.in_channels))
    channels = trunk.bn1.num_features
    trunk.bn1 = _sliced_bn(trunk.bn1, idx)
    for number in range(1, 5):
        stage = getattr(trunk, f"layer{number}")
        alive_in = torch.zeros(channels, dtype=torch.bool)
        alive_in[idx] = True
        stream = _indices(_stage_alive(stage, alive_in))
        channels = getattr(stage[0], _pairs(stage[0])[-1][1]).num_features  # before slicing
        for position, block in enumerate(stage):
            _compact_block(block, idx if position == 0 else stream, stream)
        idx = stream
    return CompactEncoder(trunk, idx, backbone.out_dim).eval()


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
