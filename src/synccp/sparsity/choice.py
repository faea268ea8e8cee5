"""How a Sparsifier chooses its masks: the step-0 masks of its algorithm row, and RigL/GraNet's
drop-and-grow of the online masks. Pure functions of the spec, the scores and the generator;
the Sparsifier (sparsifier.py) installs what they return."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from synccp.sparsity.algorithms import random_init_allocation, regrow_masks
from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.branch_masks import Masks
from synccp.sparsity.scores import random_scores
from synccp.sparsity.spec import SparsitySpec

Select = Callable[[tuple[float, float]], tuple[Masks, Masks]]


def initial_masks(spec: SparsitySpec, weights: dict[str, Tensor], *, generator: torch.Generator,
                  select: Select) -> tuple[Masks, Masks]:
    """Masks at the step-0 densities of the fitting `weights`: dense, seeded random (static,
    RigL: one draw of `generator`) or by magnitude (`select`, the Sparsifier's own choice)."""
    densities = spec.densities(0)
    if spec.policy.init == "dense":
        ones = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
        return ones, ones
    if spec.policy.init == "random":
        scores = {name: random_scores(tuple(w.shape), generator=generator, device=w.device)
                  for name, w in weights.items()}
        online = allocate_masks(scores, densities[0], pattern=spec.pattern,
                                allocation=random_init_allocation(spec.allocation))
        return online, online
    return select(densities)


def drop_and_grow(spec: SparsitySpec, step: int, online: Masks, *, scores: Masks,
                  gradients: Masks | None) -> tuple[Masks, Masks]:
    """RigL/GraNet at update `step`: drop the weakest `spec.drop_fraction_at(step)` of each
    layer's active units by `scores` and grow as many by |dense gradient|; returns (online masks,
    grown entries). `gradients` None: the caller captured none (an error naming the fix)."""
    fraction = spec.drop_fraction_at(step)
    if fraction <= 0.0:
        return online, {}
    if gradients is None:
        raise RuntimeError(f"sparsity.algorithm={spec.algorithm!r} grows by dense gradient: "
                           f"call capture_({step}) after backward and before mask_gradients_()")
    regrow = spec.policy.regrow
    assert regrow is not None  # drop_fraction_at is 0 for rows without regrowth
    return regrow_masks(online, scores, gradients, fraction=fraction, pattern=spec.pattern,
                        ceil=regrow.ceil)
