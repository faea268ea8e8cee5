"""Per-algorithm mask policies (frozen descriptions) and the pure mask-update steps they compose.

An algorithm is a combination of independent switches, never a subclass: how masks start
(`init`), when they change (`cadence`), whether they are re-selected by score (`reselect`) and
only shrink (`shrink_only`), whether a drop-and-grow step follows (`regrow`), and how the second
branch's mask relates to the online one (`second`, `nested`).

- dense: no masks.
- static: random ERK masks at the final density, fixed (pruning at initialisation; the "Static"
  baseline of Evci et al. 2020).
- gmp: gradual magnitude pruning, Zhu & Gupta, "To prune, or not to prune: exploring the efficacy
  of pruning for model compression" (arXiv:1710.01878, 2017): the cubic ramp, masks only shrink;
  the second branch shares the online mask.
- sdclr: Jiang et al., "Self-Damaging Contrastive Learning" (ICML 2021, arXiv:2106.02990): one
  branch is a magnitude-pruned copy at a fixed density, re-pruned every epoch, the other dense.
- rigl: Evci et al., "Rigging the Lottery: Making All Tickets Winners" (ICML 2020,
  arXiv:1911.11134): fixed ERK density; every ΔT steps, per layer, drop the fraction
  f_decay(t) = α/2·(1 + cos(tπ/T_end)) of active weights with the smallest magnitude and grow as
  many inactive ones with the largest dense-gradient magnitude, initialised to zero.
- granet: Liu et al., "Sparse Training via Boosting Pruning Plasticity with Neuroregeneration"
  (NeurIPS 2021, arXiv:2106.10404): gmp's gradual magnitude pruning, then at each update a
  prune-and-regrow ("neuroregeneration") of a cosine-decayed fraction by magnitude / dense
  gradient, per layer.
- synccp: "Synchronized Contrastive Pruning for Efficient Self-Supervised Learning" (ICLR 2023
  submission, OpenReview aCdREQkEMGk; our definition in DESIGN.md §1): both branches pruned at the
  same update steps, online to density(t), second to min(1, density(t) + Δ) from its own scores;
  no regrow; frozen after the ramp. The second mask always contains the online one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.granularity import (Pattern, from_nm_groups, keep_top, mask_from_units, nm_groups,
                                         unit_all, unit_scores)
from synccp.sparsity.schedule import ALGORITHMS, is_update_step


@dataclass(frozen=True)
class Policy:
    """How one algorithm sets masks (see the module docstring for the papers)."""

    init: str          # "dense" | "magnitude" (of the initial weights) | "random" (seeded)
    cadence: str       # "never" | "ramp" (update_every within [start, end]) | "epoch"
    reselect: bool     # at updates, keep the top target density of the branch's scores
    shrink_only: bool  # re-selection only among currently active units: no weight comes back
    regrow: bool       # then drop-and-grow a cosine-decayed fraction by dense gradient
    second: str        # "same": the second branch uses the online mask; "own": its own density
    nested: bool       # the second mask is forced to contain the online mask (both kinds of method)
    zero_pruned: bool = True  # pruned entries are zeroed in storage; False: masks act in the
    #                           forward only and every entry keeps training (SDCLR)


POLICIES: dict[str, Policy] = {
    #                init         cadence  reselect shrink  regrow second  nested
    "dense":  Policy("dense",     "never", False,   False,  False, "same", False),
    "static": Policy("random",    "never", False,   False,  False, "same", False),
    "gmp":    Policy("magnitude", "ramp",  True,    True,   False, "same", False),
    "sdclr":  Policy("magnitude", "epoch", True,    False,  False, "own",  False, zero_pruned=False),
    "rigl":   Policy("random",    "ramp",  False,   False,  True,  "same", False),
    "granet": Policy("magnitude", "ramp",  True,    True,   True,  "same", False),
    "synccp": Policy("magnitude", "ramp",  True,    True,   False, "own",  True),
}
assert set(POLICIES) == set(ALGORITHMS)


def policy_for(algorithm: str) -> Policy:
    if algorithm not in POLICIES:
        raise ValueError(f"sparsity.algorithm must be one of {', '.join(POLICIES)}, got {algorithm!r}")
    return POLICIES[algorithm]


def random_init_allocation(allocation: str) -> str:
    """Allocation of random initial masks: a global threshold over random scores is uniform in
    expectation, so `global` means ERK here (RigL's and static sparse training's default)."""
    return "erk" if allocation == "global" else allocation


def is_policy_update(policy: Policy, step: int, *, start_step: int, end_step: int, update_every: int,
                     steps_per_epoch: int, total_steps: int) -> bool:
    """Whether masks change after optimizer step `step` (≥ 1; step 0 is `prepare_`)."""
    if step < 1 or policy.cadence == "never":
        return False
    if policy.cadence == "epoch":  # SDCLR: at every epoch end, through the whole run
        return step % steps_per_epoch == 0 and step <= total_steps
    return is_update_step(step, start=start_step, end=end_step, every=update_every)


Masks = dict[str, Tensor]


def select_masks(policy: Policy, online_scores: Masks, second_scores: Masks, *,
                 densities: tuple[float, float], previous: tuple[Masks, Masks] | None,
                 allocation: str, pattern: Pattern) -> tuple[Masks, Masks]:
    """Keep the top target density of each branch's scores (DESIGN.md §1, SyncCP steps 1–2).

    `previous` restricts each branch to its current masks (`shrink_only`: nothing comes back).
    With a `nested` policy the second mask is forced to contain the online one, so M_A ⊆ M_B holds
    exactly despite ties and rounding, for a shared encoder and for a momentum target alike (the
    target's own scores then only choose its extra entries). A `same` policy returns the online
    masks for both branches (the identical dict).
    """
    before_online, before_second = previous if previous is not None else (None, None)
    online = allocate_masks(online_scores, densities[0], allocation=allocation, pattern=pattern,
                            allowed=before_online)
    if policy.second == "same":
        return online, online
    forced = online if policy.nested else None
    second = allocate_masks(second_scores, densities[1], allocation=allocation, pattern=pattern,
                            allowed=before_second, forced=forced)
    return online, second


def regrow_masks(online: Masks, magnitudes: Masks, gradients: Masks, *, fraction: float,
                 pattern: Pattern) -> tuple[Masks, Masks]:
    """Drop-and-grow every layer with floor(fraction × its active units) (RigL; GraNet's
    "neuroregeneration"). Returns (new masks, grown entries). One host sync for the counts."""
    actives = torch.stack([active_units(mask, pattern) for mask in online.values()]).tolist()
    new, grown = {}, {}
    for (name, mask), active in zip(online.items(), actives):
        new[name], grown[name] = drop_and_grow(mask, magnitudes[name], gradients[name],
                                               count=math.floor(fraction * active), active=active,
                                               pattern=pattern)
    return new, grown


def active_units(mask: Tensor, pattern: Pattern) -> Tensor:
    """0-d count of the units drop-and-grow may drop: active units, or for N:M the active
    entries of N:M groups (dense groups are left alone)."""
    if pattern.granularity == "nm":
        groups = nm_groups(mask, pattern.m)  # (G, M)
        return torch.count_nonzero(groups & (groups.sum(1, keepdim=True) < pattern.m))
    return torch.count_nonzero(unit_all(mask, pattern))


def drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, *, count: int, active: int,
                  pattern: Pattern) -> tuple[Tensor, Tensor]:
    """RigL's update of one layer: drop the `count` active units of lowest magnitude, then grow
    `count` inactive units of highest |dense gradient| (a just-dropped unit may be grown back).
    `active` is `active_units(mask, pattern)` as an int.
    Returns (new mask, grown) where grown = newly active entries, to be zero-initialised.
    For N:M, entries are swapped inside each N:M group, so every group keeps exactly N.
    """
    if count <= 0:
        return mask, torch.zeros_like(mask)
    if pattern.granularity == "nm":
        new = _nm_drop_and_grow(mask, magnitude, gradient, count=count, m=pattern.m)
    else:
        units = unit_all(mask, pattern)  # (U,)
        kept = keep_top(torch.where(units, unit_scores(magnitude, pattern), -math.inf), active - count)
        grown_units = keep_top(torch.where(kept, -math.inf, unit_scores(gradient, pattern)), count)
        new = mask_from_units(magnitude, kept | grown_units, pattern)
    return new, new & ~mask


def _nm_drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, *, count: int, m: int) -> Tensor:
    shape = tuple(mask.shape)
    groups = nm_groups(mask, m)  # (G, M)
    candidates = groups & (groups.sum(1, keepdim=True) < m)  # active entries of N:M groups
    dropped = keep_top(torch.where(candidates, -nm_groups(magnitude, m), -math.inf), count)
    after = groups & ~dropped
    lost = dropped.sum(1, keepdim=True)  # (G, 1)
    growth = torch.where(after, -math.inf, nm_groups(gradient, m))  # (G, M)
    order = growth.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1, stable=True)  # rank of each entry in its group by gradient
    return from_nm_groups(after | ((rank < lost) & ~after), shape)
