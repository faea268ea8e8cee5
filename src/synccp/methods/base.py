"""The common contract of the SSL methods (docs/architecture.md, DESIGN.md §1).

A method owns the online backbone θ, its heads, and (momentum methods) the EMA target copies ξ.
It does not own masks or the encoders' forward: the trainer hands it two callables, `online`
and `second`, each mapping (B, C, H, W) images to (B, D) backbone features.

- Shared-encoder methods (SimCLR, Barlow Twins, SimSiam): `online` runs θ⊙M_A and `second` runs
  θ⊙M_B, both with gradient; `view_a` goes through `online`, `view_b` through `second`. Heads are
  shared and dense. The trainer swaps the views every step.
- Momentum methods (BYOL, MoCo-v2): `online` is the online backbone (both views, one forward per
  view so BatchNorm sees per-view batch statistics, as solo-learn does), `second` the target
  backbone (both views, under `torch.no_grad()`), followed by the target projector.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from synccp.models.ema import ema_update_, frozen_copy

Encode = Callable[[Tensor], Tensor]  # (B, C, H, W) -> (B, D) backbone features


class SSLMethod(nn.Module):
    """Base class: backbone, heads and the loss of one SSL method; no sparsity inside."""

    name: ClassVar[str]
    shared_encoder: ClassVar[bool]

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.target_backbone: nn.Module | None = None
        self.branch_norms: nn.ModuleList | None = None
        self._branch_norm_names: list[str] = []

    def add_branch_norms(self) -> None:
        """Independent BatchNorm layers for a second (pruned) path through the shared backbone:
        SDCLR's `--prune_dual_bn` (Jiang et al., ICML 2021: "Either branch has its independent
        batch normalization layers"; VITA-Group/SDCLR `models/resnet_prune_multibn.py`). Copies
        of the backbone's norm layers at their current values, trained and checkpointed with the
        method; the backbone itself stays plain and is what gets exported."""
        norms = [(name, module) for name, module in self.backbone.named_modules()
                 if isinstance(module, nn.modules.batchnorm._NormBase)]
        self._branch_norm_names = [name for name, _ in norms]
        self.branch_norms = nn.ModuleList(copy.deepcopy(module) for _, module in norms)

    def branch_norm_tensors(self) -> dict[str, Tensor]:
        """{backbone name: tensor} of the branch norms' parameters and buffers, to be passed to
        `torch.func.functional_call(backbone, ...)` (running statistics update in place)."""
        if self.branch_norms is None:
            return {}
        out = {}
        for name, module in zip(self._branch_norm_names, self.branch_norms, strict=True):
            for key, tensor in [
                *module.named_parameters(recurse=False),
                *module.named_buffers(recurse=False),
            ]:
                out[f"{name}.{key}"] = tensor
        return out

    @property
    def feature_dim(self) -> int:
        """D of the backbone features (`backbone.out_dim`)."""
        return int(self.backbone.out_dim)

    def training_loss(
        self, view_a: Tensor, view_b: Tensor, *, online: Encode, second: Encode
    ) -> Tensor:
        """The method's scalar loss for one batch of two views, each (B, C, H, W)."""
        raise NotImplementedError

    def forward(self, view_a: Tensor, view_b: Tensor, *, online: Encode, second: Encode) -> Tensor:
        """`training_loss`, so that DistributedDataParallel can wrap the whole method."""
        return self.training_loss(view_a, view_b, online=online, second=second)

    def update_target(self, tau: float) -> None:
        """EMA of the online backbone and projector into their targets; no-op without a target."""

    def after_step(self) -> None:
        """Bookkeeping after the optimizer step (MoCo: enqueue this step's keys); default no-op."""

    def target_parameters(self) -> dict[str, Tensor] | None:
        """The target backbone's named parameters (ξ), or None for shared-encoder methods."""
        if self.target_backbone is None:
            return None
        return dict(self.target_backbone.named_parameters())


class MomentumMethod(SSLMethod):
    """A method with an EMA target: frozen copies of the backbone and of `projector`.

    Subclasses set `self.projector` and call `_make_targets()` once it exists. `base_tau` and
    `final_tau` are the end points of the cosine τ schedule the trainer follows (`cosine_tau`).
    """

    shared_encoder = False

    def __init__(self, backbone: nn.Module, *, base_tau: float, final_tau: float):
        super().__init__(backbone)
        check_options(base_tau=base_tau, final_tau=final_tau)
        self.base_tau = base_tau
        self.final_tau = final_tau

    def _make_targets(self) -> None:
        """ξ = θ at initialization, for the backbone and the projector (no gradient)."""
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        ema_update_(self.target_backbone, self.backbone, tau)
        ema_update_(self.target_projector, self.projector, tau)

    def target_projections(self, view: Tensor, second: Encode) -> Tensor:
        """Target branch: target projector on `second`'s features, without gradient: (B, P)."""
        with torch.no_grad():
            return self.target_projector(second(view))


# Upper bounds of the size-like options: a value that type-checks must not reach the allocator
# unbounded (issue 16); far above any published setting.
SIZE_LIMITS = {"proj_hidden_dim": 16384, "proj_output_dim": 16384, "pred_hidden_dim": 16384,
               "queue_size": 2**20}
NON_NEGATIVE = ("lambda_offdiag",)
TAUS = ("base_tau", "final_tau")


def check_options(**values: float) -> None:
    """The one check of the methods' options (their `method.*` config keys), called by every
    method's constructor and by the config at load time: sizes in [1, limit], `lambda_offdiag`
    >= 0, every other option > 0, and 0 <= base_tau <= final_tau <= 1 (given together).
    ValueError naming the key and the value."""
    for key, value in values.items():
        if key in TAUS:
            continue
        if key in SIZE_LIMITS:
            if not 1 <= value <= SIZE_LIMITS[key]:
                raise ValueError(f"method.{key} must be in [1, {SIZE_LIMITS[key]}], got {value!r}")
        elif key in NON_NEGATIVE:
            if not value >= 0:
                raise ValueError(f"method.{key} must be >= 0, got {value}")
        elif not value > 0:
            raise ValueError(f"method.{key} must be > 0, got {value}")
    if any(key in values for key in TAUS):
        base, final = values["base_tau"], values["final_tau"]
        if not 0.0 <= base <= final <= 1.0:
            raise ValueError(f"method.base_tau and method.final_tau need 0 <= base_tau <= "
                             f"final_tau <= 1, got base_tau={base}, final_tau={final}")
