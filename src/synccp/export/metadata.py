"""What an exported encoder file says about itself: architecture, input, sparsity and mask layout.

safetensors metadata is a flat str → str map; synccp stores two JSON documents in it next to the
usual ``format = pt``: ``synccp.encoder`` (how to build and feed the network) and
``synccp.sparsity`` (densities and the layout of the masks). `load_encoder` needs nothing else.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import safe_open

import synccp

ENCODER_KEY = "synccp.encoder"
SPARSITY_KEY = "synccp.sparsity"

# Where each granularity's structure lies in the (C_out, C_in, kh, kw) conv weight, and what a
# deployment toolkit must read: docs/export.md explains each with code.
MASK_LAYOUTS = {
    "unstructured": "element-wise: any entry may be zero",
    "nm": "N:M groups of M consecutive input channels in channels-last order: "
    "weight.permute(0, 2, 3, 1).reshape(C_out, -1) has at most N nonzeros in every M "
    "consecutive entries of a row (TensorRT's conv layout); for 1x1 convs and linear layers "
    "this is also torch's default (C_out, C_in) flattening used by to_sparse_semi_structured",
    "block": "b_out x b_in tiles of the (C_out, C_in) plane at each kernel position are all zero "
             "or kept",
    "channel": "whole output filters weight[c] are zero (synccp export --format compact removes "
               "them)",
}


def encoder_metadata(
    *,
    backbone: str,
    stem: str,
    width: int,
    in_channels: int,
    out_dim: int,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> dict:
    """The ``synccp.encoder`` document: enough to rebuild the network and feed it images."""
    return {
        "architecture": backbone,
        "stem": stem,
        "width": width,
        "in_channels": in_channels,
        "out_dim": out_dim,
        "image_size": image_size,
        "mean": list(mean),
        "std": list(std),
        "input": "float32 (B, C, image_size, image_size) = (uint8 / 255 - mean) / std",
        "output": "float32 (B, out_dim) globally average-pooled features",
        "parameter_names": "torchvision.models.resnet* without fc",
    }


def sparsity_metadata(
    *,
    algorithm: str,
    granularity: str,
    n: int,
    m: int,
    block: tuple[int, int],
    state: dict[str, torch.Tensor],
    prunable: list[str],
) -> dict:
    """The ``synccp.sparsity`` document, densities measured on the exported tensors `state`."""
    layers = {name: state[name].count_nonzero().item() / state[name].numel() for name in prunable}
    kept = sum(state[name].count_nonzero().item() for name in prunable)
    total = sum(state[name].numel() for name in prunable)
    return {
        "algorithm": algorithm,
        "granularity": granularity,
        "n": n,
        "m": m,
        "block": list(block),
        "density": kept / total if total else 1.0,
        "layer_density": layers,
        "mask_layout": MASK_LAYOUTS[granularity],
    }


def file_metadata(encoder: dict, sparsity: dict) -> dict[str, str]:
    return {
        "format": "pt",
        "synccp.version": synccp.__version__,
        ENCODER_KEY: json.dumps(encoder),
        SPARSITY_KEY: json.dumps(sparsity),
    }


def canonicalize(path: str | Path) -> None:
    """Rewrite a safetensors file's header with sorted keys: the same bytes in every process.

    safetensors keeps metadata in a hash map whose order changes from process to process, and a
    resumed run must export byte-identical files; the header is re-serialized with sorted keys and
    padded with spaces to 8 bytes, as the format allows (tensor offsets are relative to data)."""
    path = Path(path)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.dumps(
        json.loads(raw[8 : 8 + length]), sort_keys=True, separators=(",", ":")
    ).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + length :])


def read_metadata(path: str | Path) -> tuple[dict, dict]:
    """(encoder, sparsity) documents of an exported file; a clear error for a bare-tensor file."""
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if ENCODER_KEY not in meta:
        raise ValueError(
            f"{path} has no {ENCODER_KEY!r} metadata (written before synccp stored "
            f"it, or not by synccp): build the backbone yourself and load_state_dict it"
        )
    return json.loads(meta[ENCODER_KEY]), json.loads(meta.get(SPARSITY_KEY, "{}"))
