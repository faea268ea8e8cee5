"""The Sparsifier's mask state: both branches' masks, their union, the shadow, cached counts.

Installing masks zeroes what they switch off (weights and optimizer state). Shared encoder: one
tensor θ, two masks; θ is zero where both masks are off. Momentum methods: θ is zero outside
the online mask, the target ξ outside the second mask (SDCLR's sparse target excepted: ξ stays
dense and the target forward runs ξ⊙M). Nested rows (SyncCP) keep, for each entry of
M_second \\ M_online, the last value the online weight had before it was pruned (the *shadow*,
`synccp.sparsity.sparsifier`'s docstring).
"""

from __future__ import annotations

import torch
from torch import Tensor

from synccp.sparsity.masking import keep_only_, like_mask, prune_, updated_shadow
from synccp.sparsity.oscillation import mask_counts, metrics_from_counts
from synccp.sparsity.registry import Policy

BRANCHES = ("online", "second")
Masks = dict[str, Tensor]


class BranchMasks:
    """Masks of the fitting layers `fit` of both branches (unfit layers: all ones, never
    stored); `weights` maps branch → name → weight (the second branch is θ when `shared`)."""

    def __init__(self, weights: dict[str, Masks], fit: list[str], unfit: list[str], *,
                 shared: bool, policy: Policy):
        self._weights = weights
        self._fit = fit
        self._shared = shared
        self._policy = policy
        self._ones = {name: torch.ones_like(weights["online"][name], dtype=torch.bool)
                      for name in unfit}
        self.masks: dict[str, Masks] = {branch: {} for branch in BRANCHES}
        self.union: Masks = {}
        self.shadow: Masks = {}  # momentum + nested: last online value on M_second \ M_online
        self.counts: dict = {}

    @property
    def keeps_shadow(self) -> bool:
        return not self._shared and self._policy.nested

    def current(self, branch: str) -> Masks:
        """The branch's masks of the fitting layers."""
        return {name: self.masks[branch][name] for name in self._fit}

    def install(self, online: Masks, second: Masks, *, grown: Masks | None = None,
                optimizer: torch.optim.Optimizer | None = None) -> None:
        """Store new masks (`second is online`: one mask for both branches); zero the weights
        (and optimizer state) they switch off or grow."""
        grown = grown or {}
        for name in self._fit:
            weight = self._weights["online"][name]
            on = self.masks["online"][name] = like_mask(weight, online[name])
            sec = self.masks["second"][name] = (on if second is online
                                                else like_mask(weight, second[name]))
            if self.keeps_shadow and sec is not on:
                shadow = updated_shadow(self.shadow.get(name), weight, on, sec)
                if shadow is not None:
                    self.shadow[name] = shadow
            keep = self.union[name] = on | sec if self._shared and sec is not on else on
            prune_(weight, keep & ~grown[name] if name in grown else keep, optimizer)
            if not self._shared and self._policy.zero_pruned:
                prune_(self._weights["second"][name], sec, None)

    def full(self) -> dict[str, Masks]:
        """Masks of every prunable layer, in parameter order (unfit layers: all ones)."""
        return {branch: {name: self.masks[branch].get(name, self._ones.get(name))
                         for name in self._weights["online"]} for branch in BRANCHES}

    def record(self, before: dict[str, Masks]) -> dict:
        """Metrics of the last change (one host sync); caches the counts."""
        self.counts = mask_counts(before, self.full())
        return metrics_from_counts(self.counts)

    def _kept(self, name: str) -> tuple[int, int, int]:
        """(online, second, both) kept entries of layer `name`, from the cached counts."""
        return (self.counts["online"][name][1], self.counts["second"][name][1],
                self.counts["both"][name])

    def covers_union(self, branch: str, name: str) -> bool:
        """True when the branch mask equals the union (from the cached counts, no sync)."""
        online, second, both = self._kept(name)
        return (online if branch == "online" else second) == online + second - both

    def union_full(self, name: str) -> bool:
        """True when the masks touching θ keep every entry of layer `name` (no sync)."""
        online, second, both = self._kept(name)
        union = online + second - both if self._shared else online
        return union == self.counts["numel"][name]

    def mask_gradient_(self, name: str) -> None:
        """grad ← grad ⊙ union of the masks touching θ."""
        grad = self._weights["online"][name].grad
        if grad is not None and not self.union_full(name):
            keep_only_(grad, self.union[name])

    def keep_union_(self) -> None:
        """Re-zero θ outside the union (optimizer state could have moved pruned weights)."""
        for name in self._fit:
            prune_(self._weights["online"][name], self.union[name], None)

    def branch_weights(self, branch: str) -> dict[str, Tensor] | None:
        """θ⊙M for the layers where the branch mask is not the union (shared encoder); SDCLR's
        sparse target: ξ⊙M; None when the plain module is right."""
        if not self._shared:
            if self._policy.zero_pruned:
                return None
            source = self._weights[branch]  # SDCLR's sparse target: ξ stays dense, runs as ξ⊙M
            weights = {name: source[name] * self.masks[branch][name] for name in self._fit
                       if self.counts[branch][name][1] < self.counts["numel"][name]}
            return weights or None
        # θ · M (bool): cheaper than torch.where(M, θ, 0), forward and backward, on CPU
        # (docs/sparsity.md)
        weights = {name: self._weights["online"][name] * self.masks[branch][name]
                   for name in self._fit if not self.covers_union(branch, name)}
        return weights or None

    def remask_second_(self, tau: float) -> bool:
        """After the EMA target update with `tau` (momentum methods whose pruned entries are
        zero): add (1 − τ)·shadow on M_second \\ M_online (nested), or ξ ← ξ ⊙ M_second where
        the target mask does not contain the online one. True when a shadow was added."""
        shadowed = False
        with torch.no_grad():
            for name in self._fit:
                online, second, both = self._kept(name)
                target = self._weights["second"][name]
                if self.keeps_shadow:
                    if second > online and tau < 1.0:
                        target.add_(self.shadow[name].to(target.dtype), alpha=1.0 - tau)
                        shadowed = True
                elif second < self.counts["numel"][name] and both < online:
                    keep_only_(target, self.masks["second"][name])
        return shadowed

    def export(self) -> dict[str, Tensor]:
        """{"online/<name>", "second/<name>"}: bool, CPU, contiguous copies (unfit: ones)."""
        return {f"{branch}/{name}": mask.detach().cpu().contiguous().clone()
                for branch, masks in self.full().items() for name, mask in masks.items()}

    def densities(self) -> dict:
        """Densities per branch, total and per layer (from the cached counts)."""
        numel = self.counts["numel"]
        out = {}
        for branch in BRANCHES:
            kept = {name: c[1] for name, c in self.counts[branch].items()}
            out[branch] = {"total": sum(kept.values()) / max(1, sum(numel.values())),
                           "layers": {name: k / numel[name] for name, k in kept.items()}}
        return out

    def state(self) -> dict:
        return {"masks": {b: {n: m.detach().clone() for n, m in self.masks[b].items()}
                          for b in BRANCHES},
                "shadow": {n: s.detach().clone() for n, s in self.shadow.items()}}

    def load(self, state: dict) -> None:
        """Install the saved masks (on the weights' devices) and restore the saved shadow (not
        re-derived from θ)."""
        device = {name: weight.device for name, weight in self._weights["online"].items()}
        online = {n: m.to(device[n]) for n, m in state["masks"]["online"].items()}
        second = online if self._policy.second == "same" else {
            n: m.to(device[n]) for n, m in state["masks"]["second"].items()}
        self.install(online, second)
        self.shadow = {n: s.to(device[n]).clone() for n, s in state.get("shadow", {}).items()}
        self.record(self.full())
