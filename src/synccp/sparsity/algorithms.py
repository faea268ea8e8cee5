"""The pure mask-update steps the algorithms' registry rows (`synccp.sparsity.registry`) compose.

An algorithm is a combination of independent switches, never a subclass (the row's fields).
The papers behind each row:

- dense: no masks.
- static: random ERK masks at the final density, fixed (pruning at initialisation; the "Static"
  baseline of Evci et al. 2020).
- gmp: gradual magnitude pruning, Zhu & Gupta, "To prune, or not to prune: exploring the efficacy
  of pruning for model compression" (arXiv:1710.01878, 2017): the cubic ramp, masks only shrink;
  the second branch shares the online mask.
- sdclr: Jiang et al., "Self-Damaging Contrastive Learning" (ICML 2021, arXiv:2106.02990;
  VITA-Group/SDCLR `prune/mask.py` `magnitudePruning`, called once per epoch in
  `prune/prune_simCLR.py` `train_prune`): the pruned branch is the dense weights seen through a
  global magnitude mask at a fixed density, re-pruned every epoch from the dense weights, which
  keep training every entry through the dense branch; the pruned branch has its own BatchNorm
  layers (`--prune_dual_bn`). With a momentum method (our generalisation) the pruned branch is
  the EMA target: ξ stays dense and runs as ξ⊙M, re-pruned every epoch from |ξ|.
- rigl: Evci et al., "Rigging the Lottery: Making All Tickets Winners" (ICML 2020,
  arXiv:1911.11134): fixed ERK density; every ΔT steps from the start of training to T_end = 75%
  of it, per layer, drop the fraction f_decay(t) = α/2·(1 + cos(tπ/T_end)) (α = 0.3) of active
  weights with the smallest magnitude and grow as many inactive ones with the largest
  dense-gradient magnitude, initialised to zero.
- granet: Liu et al., "Sparse Training via Boosting Pruning Plasticity with Neuroregeneration"
  (NeurIPS 2021, arXiv:2106.10404; VITA-Group/GraNet `CIFAR/sparselearning/core.py`
  `Masking.step`: `pruning` then `truncate_weights`): gmp's gradual global magnitude pruning over
  the ramp, and at every update from the start of pruning **to the end of training** a per-layer
  prune-and-regrow ("neuroregeneration") of ⌈r(t)·active⌉ weights by magnitude / dense gradient,
  r cosine-decayed from 0.5 to 0.005 over all training steps; random ERK masks at the initial
  density (dense at the default initial density 1).
- synccp: "Synchronized Contrastive Pruning for Efficient Self-Supervised Learning" (ICLR 2023
  submission, OpenReview aCdREQkEMGk; our definition in DESIGN.md §1): both branches pruned at the
  same update steps, online to density(t), second to min(1, density(t) + Δ) from its own scores;
  no regrow; frozen after the ramp. The second mask always contains the online one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.granularity import NM, Pattern
from synccp.sparsity.registry import Policy
from synccp.sparsity.schedule import is_update_step
from synccp.sparsity.topk import keep_top


def random_init_allocation(allocation: str) -> str:
    """Allocation of random initial masks: a global threshold over random scores is uniform in
    expectation, so `global` means ERK here (RigL's and static sparse training's default)."""
    return "erk" if allocation == "global" else allocation


def is_policy_update(policy: Policy, step: int, *, start_step: int, end_step: int,
                     update_every: int, steps_per_epoch: int, total_steps: int,
                     regrow_end_step: int = 0) -> bool:
    """Whether masks change after optimizer step `step` (≥ 1; step 0 is `prepare_`).

    `regrow_end_step` is the last step of drop-and-grow (cadence "regrow": RigL's T_end, GraNet's
    end of training)."""
    if step < 1 or policy.cadence == "never":
        return False
    if policy.cadence == "epoch":  # SDCLR: at every epoch end, through the whole run
        return step % steps_per_epoch == 0 and step <= total_steps
    ramp = is_update_step(step, start=start_step, end=end_step, every=update_every)
    if policy.cadence == "ramp":
        return ramp
    begin = start_step if policy.regrow is not None and policy.regrow.from_ramp_start else 0
    regrow = begin <= step <= regrow_end_step and (step - begin) % update_every == 0
    return (policy.reselect and ramp) or regrow


def regrow_settings(policy: Policy, *, drop_fraction: float | None, regrow_end_step: int | None,
                    total_steps: int) -> tuple[float, int]:
    """(initial drop fraction, last drop-and-grow step): the user's values, else the algorithm's
    own (RigL: 0.3 until 75% of training; GraNet: 0.5 until the end). (0.0, 0) without regrowth."""
    regrow = policy.regrow
    if regrow is None:
        return 0.0, 0
    fraction = regrow.drop_fraction if drop_fraction is None else drop_fraction
    end = round(regrow.end * total_steps) if regrow_end_step is None else regrow_end_step
    return fraction, end


def tracked_branches(policy: Policy, *, shared: bool, score_ema: float) -> tuple[str, ...]:
    """Branches whose score EMA the Sparsifier keeps (score_ema > 0 and masks that change): a
    shared encoder scores θ once for both masks, a momentum method θ and ξ (only θ when the
    target reuses the online mask)."""
    if score_ema == 0.0 or policy.cadence == "never":
        return ()
    return ("online",) if shared or policy.second == "same" else ("online", "second")


def selected_branches(policy: Policy) -> int:
    """Masks selected from scores at one update: 1 when the second branch reuses the online mask
    (gmp, rigl, granet), 2 when it has its own (synccp; sdclr's dense branch costs nothing)."""
    if policy.second == "same":
        return 1
    return 1 if not policy.nested else 2


def last_scored_step(policy: Policy, *, end_step: int, regrow_end_step: int,
                     total_steps: int) -> int:
    """The last step whose update reads scores: score EMAs need no updating after it."""
    if policy.cadence == "epoch":
        return total_steps
    if policy.cadence == "never":
        return 0
    if policy.cadence == "regrow":
        return max(end_step, regrow_end_step)
    return end_step


def policy_update_steps(policy: Policy, *, start_step: int, end_step: int, update_every: int,
                        steps_per_epoch: int, total_steps: int,
                        regrow_end_step: int = 0) -> list[int]:
    """Every step with `is_policy_update` true, by arithmetic per phase (no walk over all steps:
    the cost model's time does not grow with the length of training, only with the updates)."""
    if policy.cadence == "never":
        return []
    if policy.cadence == "epoch":
        return list(range(steps_per_epoch, total_steps + 1, steps_per_epoch))
    steps: set[int] = set()
    if policy.cadence == "ramp" or policy.reselect:
        steps.update(range(start_step, end_step + 1, update_every))
        steps.add(end_step)
    if policy.cadence == "regrow":
        begin = start_step if policy.regrow is not None and policy.regrow.from_ramp_start else 0
        steps.update(range(begin, regrow_end_step + 1, update_every))
    return sorted(step for step in steps if 1 <= step <= total_steps)


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
                 pattern: Pattern, ceil: bool = False) -> tuple[Masks, Masks]:
    """Drop-and-grow every layer with floor (RigL: `int(n_ones × drop_fraction)`) or ceil (GraNet:
    `math.ceil(prune_rate × num_nonzero)`) of fraction × its active units. Returns (new masks,
    grown entries). One host sync for the counts."""
    actives = torch.stack([pattern.active_units(mask) for mask in online.values()]).tolist()
    rounding = math.ceil if ceil else math.floor
    new, grown = {}, {}
    for (name, mask), active in zip(online.items(), actives, strict=True):
        count = min(rounding(fraction * active), active)
        new[name], grown[name] = drop_and_grow(mask, magnitudes[name], gradients[name],
                                               count=count, active=active, pattern=pattern)
    return new, grown


def drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, *, count: int, active: int,
                  pattern: Pattern) -> tuple[Tensor, Tensor]:
    """RigL's update of one layer: drop the `count` active units of lowest magnitude, then grow
    `count` inactive units of highest |dense gradient| (a just-dropped unit may be grown back).
    `active` is `pattern.active_units(mask)` as an int; the pattern's `regrowth` says what is
    swapped (`REGROWTH`). Returns (new mask, grown) where grown = newly active entries, to be
    zero-initialised. For N:M, entries are swapped inside each N:M group, so every group keeps
    exactly N.
    """
    if count <= 0:
        return mask, torch.zeros_like(mask)
    new = REGROWTH[pattern.regrowth](mask, magnitude, gradient, count=count, active=active,
                                     pattern=pattern)
    return new, new & ~mask


def _unit_drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, *, count: int,
                        active: int, pattern: Pattern) -> Tensor:
    """Whole units: drop the lowest mean magnitudes, grow the highest mean |gradient|."""
    units = pattern.unit_all(mask)  # (U,)
    kept = keep_top(torch.where(units, pattern.unit_scores(magnitude), -math.inf), active - count)
    grown_units = keep_top(torch.where(kept, -math.inf, pattern.unit_scores(gradient)), count)
    return pattern.mask_from_units(magnitude, kept | grown_units)


def _nm_drop_and_grow(mask: Tensor, magnitude: Tensor, gradient: Tensor, *, count: int,
                      active: int, pattern: NM) -> Tensor:
    """Entries of N:M groups: drop the `count` lowest magnitudes over the layer, then grow in
    each group as many as it lost, by |gradient| (dense groups are left alone)."""
    groups = pattern.groups(mask)  # (G, M)
    candidates = groups & (groups.sum(1, keepdim=True) < pattern.m)  # active entries, N:M groups
    dropped = keep_top(torch.where(candidates, -pattern.groups(magnitude), -math.inf), count)
    after = groups & ~dropped
    lost = dropped.sum(1, keepdim=True)  # (G, 1)
    growth = torch.where(after, -math.inf, pattern.groups(gradient))  # (G, M)
    order = growth.argsort(dim=1, descending=True, stable=True)
    rank = order.argsort(dim=1, stable=True)  # rank of each entry in its group by gradient
    return pattern.from_groups(after | ((rank < lost) & ~after), tuple(mask.shape))


# Pattern.regrowth → the swap; each takes the Pattern whose `regrowth` names it
REGROWTH: dict[str, Callable[..., Tensor]] = {"units": _unit_drop_and_grow,
                                              "nm_groups": _nm_drop_and_grow}
