"""Export of a finished run: the online backbone (pruned entries exactly zero) and both masks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file
from torch import nn

from synccp.export.metadata import canonicalize, file_metadata, sparsity_metadata
from synccp.rundir.atomic import atomic_write
from synccp.rundir.files import check_masks, check_state_dict, read_tensors
from synccp.rundir.layout import MASKS, MODEL

if TYPE_CHECKING:
    from synccp.sparsity.sparsifier import Sparsifier


def export_model(run_dir: Path, backbone: nn.Module, sparsifier: Sparsifier, *,
                 encoder: dict | None = None) -> None:
    """Write `model.safetensors` (the online encoder θ⊙M_online) and `masks.safetensors`.

    For shared-encoder methods θ is nonzero inside the denser second mask too (DESIGN.md §1), so
    the export applies the online mask: the saved encoder is exactly the sparse online network.
    SDCLR's product is its dense encoder (its masks act in the forward only): exported unmasked;
    the pruned branch is θ⊙M_second from masks.safetensors (with its own BatchNorm, not exported).
    `encoder` (synccp.export.metadata.encoder_metadata) and the measured densities and mask layout
    go into the file's metadata, so `synccp.load_encoder` needs nothing else."""
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    masks = sparsifier.masks()
    for key, mask in masks.items():
        branch, name = key.split("/", 1)
        if branch == "online" and sparsifier.policy.zero_pruned:
            state[name] = state[name] * mask
    metadata = _metadata(sparsifier, state, masks, encoder)

    def write_model(tmp: Path) -> None:
        save_file(state, str(tmp), metadata=metadata)
        canonicalize(tmp)  # byte-identical in every process (a resumed run exports the same file)

    atomic_write(Path(run_dir) / MASKS, lambda tmp: save_file(masks, str(tmp)))
    try:
        atomic_write(Path(run_dir) / MODEL, write_model)
    except BaseException:  # e.g. a full disk: no masks without their model (resume exports again)
        (Path(run_dir) / MASKS).unlink(missing_ok=True)
        raise


def _metadata(
    sparsifier: Sparsifier, state: dict, masks: dict, encoder: dict | None
) -> dict[str, str]:
    if encoder is None:
        return {"format": "pt"}
    spec = sparsifier.spec
    sparsity = sparsity_metadata(
        algorithm=sparsifier.algorithm,
        granularity=spec.granularity,
        n=spec.n,
        m=spec.m,
        block=spec.block,
        state=state,
        prunable=[key.split("/", 1)[1] for key in masks if key.startswith("online/")],
    )
    return file_metadata(encoder, sparsity)


def load_backbone_weights(run_dir: Path, backbone: nn.Module) -> nn.Module:
    """Load `model.safetensors` of `run_dir` into a plain backbone built from the run's config."""
    path = Path(run_dir) / MODEL
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished (try --resume)")
    tensors = read_tensors(path, what="the exported encoder")
    check_state_dict(tensors, backbone.state_dict(), path)  # names the file and the key
    backbone.load_state_dict(tensors)
    return backbone


def load_masks(run_dir: Path) -> dict[str, torch.Tensor]:
    """`masks.safetensors` of `run_dir`, checked: bool, `online/` and `second/` keys in pairs."""
    path = Path(run_dir) / MASKS
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the run has not finished (try --resume)")
    masks = read_tensors(path, what="the masks")
    check_masks(masks, path)
    return masks


def encoder_description(cfg, data, backbone: nn.Module) -> dict:
    """The ``synccp.encoder`` metadata of a run's backbone trained on the dataset split `data`."""
    from synccp.export.metadata import encoder_metadata

    return encoder_metadata(
        backbone=cfg.model.backbone,
        stem=cfg.model.stem,
        width=cfg.model.width,
        in_channels=data.channels,
        out_dim=backbone.out_dim,
        image_size=data.image_size,
        mean=data.mean,
        std=data.std,
    )
