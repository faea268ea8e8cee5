"""Exported encoders without a training run: a backbone, static masks and randomized BatchNorm."""

import torch

from synccp.export.metadata import encoder_metadata
from synccp.models import build_backbone, prunable_parameters
from synccp.rundir.artifacts import export_model
from synccp.sparsity.sparsifier import Sparsifier


def sparse_backbone(*, backbone="resnet18", stem="cifar", width=8, in_channels=1,
                    granularity="unstructured", density=0.3, n=2, m=4, seed=0):
    """A backbone pruned by static (random ERK) masks, with BatchNorm statistics and affine
    parameters drawn at random (β of either sign), and its Sparsifier."""
    torch.manual_seed(seed)
    model = build_backbone(backbone, stem=stem, width=width, in_channels=in_channels)
    sparsifier = Sparsifier(prunable_parameters(model), algorithm="static", granularity=granularity,
                            density=density, n=n, m=m, allocation="erk", total_steps=1, seed=seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval(), sparsifier


def export_sparse(run_dir, **kwargs):
    """Write `model.safetensors` + `masks.safetensors` of `sparse_backbone(**kwargs)` into
    `run_dir`; return the backbone (eval mode)."""
    model, sparsifier = sparse_backbone(**kwargs)
    in_channels = kwargs.get("in_channels", 1)
    encoder = encoder_metadata(backbone=kwargs.get("backbone", "resnet18"),
                               stem=kwargs.get("stem", "cifar"), width=kwargs.get("width", 8),
                               in_channels=in_channels, out_dim=model.out_dim, image_size=16,
                               mean=(0.5,) * in_channels, std=(0.25,) * in_channels)
    run_dir.mkdir(parents=True, exist_ok=True)
    export_model(run_dir, model, sparsifier, encoder=encoder)
    return model
