"""Export of a finished run: the online backbone (pruned entries exactly zero) and both masks."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from synccp.results.rundir import MASKS, MODEL, atomic_write
from synccp.sparsity.sparsifier import Sparsifier


def export_model(run_dir: Path, backbone: nn.Module, sparsifier: Sparsifier) -> None:
    """Write `model.safetensors` (backbone state dict) and `masks.safetensors` (bool masks)."""
    state = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
             for k, v in backbone.state_dict().items()}
    masks = sparsifier.masks()
    for key, mask in masks.items():
        name = key.split("/", 1)[1]
        if key.startswith("online/"):
            assert not state[name][~mask].any(), f"pruned entries of {name} are not zero"
    atomic_write(Path(run_dir) / MODEL, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    atomic_write(Path(run_dir) / MASKS, lambda tmp: save_file(masks, str(tmp)))


def load_backbone_weights(run_dir: Path, backbone: nn.Module) -> nn.Module:
    """Load `model.safetensors` of `run_dir` into a plain backbone built from the run's config."""
    path = Path(run_dir) / MODEL
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished (try --resume)")
    backbone.load_state_dict(load_file(str(path)))
    return backbone


def load_masks(run_dir: Path) -> dict[str, torch.Tensor]:
    path = Path(run_dir) / MASKS
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished (try --resume)")
    return load_file(str(path))
