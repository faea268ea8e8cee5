"""Export of a finished run: the online backbone (pruned entries exactly zero) and both masks."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from synccp.export.metadata import file_metadata, safetensors_bytes, sparsity_metadata
from synccp.results.rundir import MASKS, MODEL, atomic_write
from synccp.sparsity.sparsifier import Sparsifier


def export_model(run_dir: Path, backbone: nn.Module, sparsifier: Sparsifier, *,
                 encoder: dict | None = None) -> None:
    """Write `model.safetensors` (the online encoder θ⊙M_online) and `masks.safetensors`.

    For shared-encoder methods θ is nonzero inside the denser second mask too (DESIGN.md §1), so
    the export applies the online mask: the saved encoder is exactly the sparse online network.
    `encoder` (synccp.export.metadata.encoder_metadata) and the measured densities and mask layout
    go into the file's metadata, so `synccp.load_encoder` needs nothing else."""
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    masks = sparsifier.masks()
    for key, mask in masks.items():
        branch, name = key.split("/", 1)
        if branch == "online":
            state[name] = state[name] * mask
    metadata = {"format": "pt"}
    if encoder is not None:
        pattern = sparsifier.pattern
        sparsity = sparsity_metadata(
            algorithm=sparsifier.algorithm, granularity=pattern.granularity, n=pattern.n,
            m=pattern.m, block=pattern.block, state=state,
            prunable=[key.split("/", 1)[1] for key in masks if key.startswith("online/")])
        metadata = file_metadata(encoder, sparsity)
    payload = safetensors_bytes(state, metadata)
    atomic_write(Path(run_dir) / MODEL, lambda tmp: Path(tmp).write_bytes(payload))
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


def encoder_description(cfg, data, backbone: nn.Module) -> dict:
    """The ``synccp.encoder`` metadata of a run's backbone trained on the dataset split `data`."""
    from synccp.export.metadata import encoder_metadata

    return encoder_metadata(backbone=cfg.model.backbone, stem=cfg.model.stem, width=cfg.model.width,
                            in_channels=data.images.shape[1], out_dim=backbone.out_dim,
                            image_size=data.images.shape[-1],
                            mean=data.mean, std=data.std)
