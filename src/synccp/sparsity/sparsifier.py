r"""The Sparsifier: the only stateful sparsity object (masks, score EMAs, captured gradients).

It composes the pure pieces (spec × scores × allocation × granularity × algorithm row). In any
training loop (README, "Use it from your own training code"):

    sparsifier = synccp.Sparsifier(model, optimizer=optimizer, algorithm="gmp", density=0.1,
                                   total_steps=steps)   # applies the initial masks
    for x, y in batches:
        loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward()
        optimizer.step()
        sparsifier.step()                               # the one call per step

Construction selects the prunable weights (`selection.prunable_weights`, or a mapping given
as is), applies the step-0 masks and, unless `hooks=False`, registers a post-accumulate-grad
hook on every prunable weight: it keeps |dense gradient| on RigL/GraNet update steps and masks
the gradient, so pruned weights stay exactly zero through SGD, AdamW or LARS. `step()` then
updates score EMAs and, on update steps, the masks, zeroing what they prune (weights and
optimizer state); with a momentum `target` module it also does the EMA target update
ξ ← τξ + (1 − τ)θ and the target re-mask. synccp's trainer calls the same pieces one by one
(`mask_gradients_` after backward, `update_`, `remask_second_`): under DistributedDataParallel
a gradient hook would see the gradients before they are averaged.

Shared encoder (no target): one tensor θ, two masks; θ is zero where both masks are off; run a
branch with `encoder(branch)`. Momentum methods: θ is zero outside the online mask, the target
ξ outside the second mask (SDCLR's sparse target excepted: ξ stays dense and the target forward
runs ξ⊙M, so its mask can move). Nested rows (SyncCP) keep M_online ⊆ M_second on both kinds.

The denser momentum target (SyncCP, DESIGN.md §1): θ is zero outside M_online, so on
M_second \ M_online the EMA ξ ← τξ + (1 − τ)θ would decay as τ^t to nothing. The Sparsifier
keeps, for each such entry, the last value the online weight had before it was pruned (the
*shadow*), and `remask_second_(tau)` adds (1 − τ)·shadow there: the target averages θ on
M_online and the pruned weight's last online value on M_second \ M_online, which is what the
authors' code does implicitly by never zeroing θ (docs/sparsity.md, "The denser target").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from synccp.models.ema import ema_update_
from synccp.sparsity import checks
from synccp.sparsity.algorithms import (last_scored_step, random_init_allocation, regrow_masks, select_masks,
                                        selected_branches, tracked_branches)
from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.granularity import Pattern, unfit_reason
from synccp.sparsity.masking import keep_only_, like_mask, prune_, updated_shadow
from synccp.sparsity.oscillation import mask_counts, metrics_from_counts
from synccp.sparsity.registry import Policy
from synccp.sparsity.schedule import cosine_drop_fraction
from synccp.sparsity.scores import ema_magnitude_, gradient_magnitude, magnitude, random_scores
from synccp.sparsity.selection import Include, matching_weights, prunable_weights
from synccp.sparsity.spec import SparsitySpec, resolve_spec

LOG = logging.getLogger(__name__)
BRANCHES = ("online", "second")
Masks = dict[str, Tensor]
Weights = nn.Module | Mapping[str, Tensor]


class Sparsifier:
    """Masks of the online and second branch of one model; see the module docstring."""

    def __init__(self, model: Weights, spec: SparsitySpec | None = None, *, target: Weights | None = None,
                 optimizer: torch.optim.Optimizer | None = None, include: Include | None = None,
                 hooks: bool = True, **settings):
        """`model`: a module (its prunable weights chosen by `include`, default
        `selection.default_include`) or a mapping name → weight taken as is. `spec`, or
        `SparsitySpec` fields as keywords (the paper's defaults for the rest; `total_steps` is
        required). `target`: the EMA target of a momentum method (a module of the same structure,
        or a mapping with the same names); None shares one module between both masks.
        `optimizer`: the state of pruned weights is zeroed in it. `hooks`: mask gradients (and
        keep RigL/GraNet's dense gradients) by hooks, so no call is needed before
        `optimizer.step()`."""
        self.spec = spec = resolve_spec(spec, settings)
        online = dict(model) if isinstance(model, Mapping) else prunable_weights(model, include)
        second = None if target is None else (
            dict(target) if isinstance(target, Mapping) else matching_weights(target, online))
        checks.check_weights(online=online, second=second)
        self.policy: Policy = spec.policy
        checks.check_branch_rule(self.policy, algorithm=spec.algorithm, shared=second is None,
                                 sparse_branch=spec.sparse_branch)
        self.drop_fraction, self._regrow_end = spec.regrow_window()
        self._modules = (model, target) if isinstance(model, nn.Module) else (None, None)
        self._optimizer = optimizer
        self._weights = {"online": dict(online), "second": dict(online if second is None else second)}
        self.shared = second is None
        self._unfit = {} if spec.algorithm == "dense" else {
            name: reason for name, p in online.items()
            if (reason := unfit_reason(tuple(p.shape), self.pattern)) is not None}
        self._fit = [name for name in online if name not in self._unfit]
        checks.log_choices(LOG, self._unfit, online, granularity=spec.granularity,
                           allocation=spec.allocation, density=spec.density, n=spec.n, m=spec.m,
                           algorithm=spec.algorithm)
        self._ones = {name: torch.ones_like(online[name], dtype=torch.bool) for name in self._unfit}
        self._generator = torch.Generator().manual_seed(spec.seed)
        self._masks: dict[str, Masks] = {"online": {}, "second": {}}
        self._union: Masks = {}
        self._shadow: Masks = {}  # momentum + nested: last online value on M_second \ M_online
        self._scores: dict[str, Masks] = {"online": {}, "second": {}}
        self._grads: Masks = {}
        self._counts: dict = {}
        self._step = 0
        self.work = {"score_ema_updates": 0, "mask_selections": 0, "regrow_updates": 0,
                     "shadow_steps": 0}  # per branch (and step): what the cost model charges
        self._initial = self._prepare()
        self._handles = [self._weights["online"][name].register_post_accumulate_grad_hook(self._hook(name))
                         for name in self._fit] if hooks else []

    @property
    def algorithm(self) -> str:
        return self.spec.algorithm

    @property
    def pattern(self) -> Pattern:
        return self.spec.pattern

    @property
    def score_ema(self) -> float:
        return self.spec.score_ema

    # ----------------------------------------------------------------- schedule and scores
    def _densities(self, step: int) -> tuple[float, float]:
        return self.spec.densities(step)

    def _is_update(self, step: int) -> bool:
        return self.spec.is_update(step)

    def _last_scored_step(self) -> int:
        """The last step whose update reads scores (EMAs need no updating after it)."""
        return last_scored_step(self.policy, end_step=self.spec.ramp[1], regrow_end_step=self._regrow_end,
                                total_steps=self.spec.total_steps)

    def _tracked(self) -> tuple[str, ...]:
        return tracked_branches(self.policy, shared=self.shared, score_ema=self.score_ema)

    def _branch_scores(self, branch: str) -> Masks:
        """Scores of each fitting layer: EMA of |w| when score_ema > 0, else |w|. A shared encoder
        scores θ for both branches; a momentum target scores ξ (dense for SDCLR's sparse target,
        whose forward is masked, so a pruned entry keeps a live EMA value and can come back)."""
        source = "online" if self.shared else branch
        if self._scores[source]:
            scores = {name: self._scores[source][name] for name in self._fit}
        else:
            scores = {name: magnitude(self._weights[source][name]) for name in self._fit}
        return scores

    def _initial_masks(self) -> tuple[Masks, Masks]:
        """Masks at the step-0 densities: dense, seeded random (static, RigL) or by magnitude."""
        densities = self._densities(0)
        weights = {name: self._weights["online"][name] for name in self._fit}
        if self.policy.init == "dense":
            ones = {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}
            return ones, ones
        if self.policy.init == "random":
            scores = {name: random_scores(tuple(w.shape), generator=self._generator, device=w.device)
                      for name, w in weights.items()}
            online = allocate_masks(scores, densities[0], pattern=self.pattern,
                                    allocation=random_init_allocation(self.spec.allocation))
            return online, online
        return self._select(densities, restrict=False)

    def _select(self, densities: tuple[float, float], *, restrict: bool) -> tuple[Masks, Masks]:
        previous = tuple({n: self._masks[b][n] for n in self._fit} for b in BRANCHES) if restrict else None
        online = self._branch_scores("online")
        second = online if self.shared or self.policy.second == "same" else self._branch_scores("second")
        return select_masks(self.policy, online, second, densities=densities, previous=previous,
                            allocation=self.spec.allocation, pattern=self.pattern)

    def _regrow(self, step: int, online: Masks) -> tuple[Masks, Masks]:
        """RigL/GraNet drop-and-grow of the online masks with the cosine-decayed fraction."""
        fraction = self._drop_fraction(step)
        if fraction <= 0.0:
            return online, {}
        if not self._grads:
            raise RuntimeError(f"sparsity.algorithm={self.algorithm!r} grows by dense gradient: call "
                               f"capture_({step}) after backward and before mask_gradients_()")
        weights = self._weights["online"]  # a layer that got no gradient grows nothing
        grads = {name: self._grads.get(name, gradient_magnitude(None, weights[name])) for name in self._fit}
        return regrow_masks(online, self._branch_scores("online"), grads, fraction=fraction,
                            pattern=self.pattern, ceil=self.policy.regrow.ceil)

    def _drop_fraction(self, step: int) -> float:
        regrow = self.policy.regrow
        return cosine_drop_fraction(step, initial=self.drop_fraction, final=regrow.floor,
                                    end=self._regrow_end)

    # ----------------------------------------------------------------- applying masks
    def _install(self, online: Masks, second: Masks, *, grown: Masks | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        """Store new masks; zero the weights (and optimizer state) they switch off or grow."""
        grown = grown or {}
        for name in self._fit:
            weight = self._weights["online"][name]
            on = self._masks["online"][name] = like_mask(weight, online[name])
            sec = self._masks["second"][name] = on if second is online else like_mask(weight, second[name])
            if self._keeps_shadow and sec is not on:
                shadow = updated_shadow(self._shadow.get(name), weight, on, sec)
                if shadow is not None:
                    self._shadow[name] = shadow
            keep = self._union[name] = on | sec if self.shared and sec is not on else on
            prune_(weight, keep & ~grown[name] if name in grown else keep, optimizer)
            if name in grown and self._scores["online"]:  # grown weights restart from |w| = 0
                self._scores["online"][name].masked_fill_(grown[name], 0.0)
            if not self.shared and self.policy.zero_pruned:
                prune_(self._weights["second"][name], sec, None)

    @property
    def _keeps_shadow(self) -> bool:
        return not self.shared and self.policy.nested

    def _full_masks(self) -> dict[str, Masks]:
        """Masks of every prunable layer, in parameter order (unfit layers: all ones)."""
        return {branch: {name: self._masks[branch].get(name, self._ones.get(name))
                         for name in self._weights["online"]} for branch in BRANCHES}

    def _record(self, before: dict[str, Masks]) -> dict:
        """Metrics of the last change (one host sync); caches the counts for summary()."""
        self._counts = mask_counts(before, self._full_masks())
        return metrics_from_counts(self._counts)

    def _covers_union(self, branch: str, name: str) -> bool:
        """True when the branch mask equals the union (from the cached counts, no sync)."""
        online, second, both = (self._counts["online"][name][1], self._counts["second"][name][1],
                                self._counts["both"][name])
        return (online if branch == "online" else second) == online + second - both

    def _prepare(self) -> dict:
        """Initial masks at the step-0 density; zero pruned weights; the metrics record
        (oscillation relative to the dense all-ones start)."""
        ones = {name: torch.ones_like(w, dtype=torch.bool) for name, w in self._weights["online"].items()}
        before = {branch: ones for branch in BRANCHES}
        online, second = self._initial_masks()
        self._install(online, second)
        for branch in self._tracked():  # EMAs start at |w| of the pruned initial weights
            self._scores[branch] = {name: magnitude(self._weights[branch][name]).clone()
                                    for name in self._fit}
        return self._record(before)

    def _hook(self, name: str) -> Callable[[Tensor], None]:
        def on_gradient(weight: Tensor) -> None:  # after the gradient of `weight` is accumulated
            self._capture_one(name, self._step + 1)
            self._mask_one(name)

        return on_gradient

    def _capture_one(self, name: str, step: int) -> None:
        if self.policy.regrow and self._is_update(step) and self._drop_fraction(step) > 0.0:
            weight = self._weights["online"][name]
            self._grads[name] = gradient_magnitude(weight.grad, weight)

    def _mask_one(self, name: str) -> None:
        grad = self._weights["online"][name].grad
        if grad is not None and not self._union_full(name):
            keep_only_(grad, self._union[name])

    # ----------------------------------------------------------------- public API
    def prepare_(self) -> dict:
        """The metrics record of the initial masks, which construction applied (for the step-0
        log line; oscillation relative to the dense all-ones start)."""
        return self._initial

    def step(self, tau: float | None = None) -> dict | None:
        """The one call per training step, after `optimizer.step()`; returns the metrics record
        of a mask update (None on other steps).

        Advances the step count; updates score EMAs and, on update steps, the masks, zeroing the
        weights (and optimizer state) they prune or grow. Without `optimizer=` at construction
        the weights are re-masked at every step instead. With a momentum `target` module, `tau`
        is required: the EMA target update ξ ← τξ + (1 − τ)θ over every parameter (buffers
        copied) of the modules, then the target re-mask (`remask_second_`)."""
        record = self.update_(self._step + 1, self._optimizer)
        if self._optimizer is None:  # optimizer state (momentum, Adam) could move pruned weights
            for name in self._fit:
                prune_(self._weights["online"][name], self._union[name], None)
        if self.shared:
            if tau is not None:
                raise ValueError(f"tau={tau} is for a momentum target; this Sparsifier has none")
            return record
        online_module, target_module = self._modules
        if tau is None or target_module is None:
            raise ValueError("step() of a Sparsifier with a momentum target needs its modules "
                             f"(model=, target= as nn.Module) and tau, got tau={tau}")
        with torch.no_grad():
            ema_update_(target_module, online_module, tau)
        self.remask_second_(tau)
        return record

    def encoder(self, branch: str, module: nn.Module | None = None, *,
                extra: Mapping[str, Tensor] | None = None) -> Callable[[Tensor], Tensor]:
        """A callable running `module` (default: the model, or for `branch="second"` with a
        target, the target) through the branch's mask: `module` itself when no layer needs
        θ⊙M, else `torch.func.functional_call` with θ⊙M (`branch_weights`). `extra` are more
        tensors to override (SDCLR's branch BatchNorm). Shared encoder (SimCLR, Barlow): run
        view A through `encoder("online")` and view B through `encoder("second")`."""
        if module is None:
            module = self._modules[1] if branch == "second" and not self.shared else self._modules[0]
            if module is None:
                raise ValueError("encoder() needs `module` when the Sparsifier was built from a mapping")
        weights = self.branch_weights(branch)
        if extra:
            weights = {**(weights or {}), **extra}
        if weights is None:
            return module
        return lambda x: torch.func.functional_call(module, weights, (x,))

    def remove_hooks(self) -> None:
        """Remove the gradient hooks (the masks stay; gradients are then masked by the caller)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def branch_weights(self, branch: str) -> dict[str, Tensor] | None:
        """θ⊙M for the layers where the branch mask is not the union (shared encoder), for
        `torch.func.functional_call`; None when the plain module is right (momentum methods,
        dense, ...). SDCLR's sparse target (momentum, `branch="second"`): ξ⊙M, ξ left dense."""
        if branch not in BRANCHES:
            raise ValueError(f"branch must be online or second, got {branch!r}")
        if not self.shared:
            if self.policy.zero_pruned:
                return None
            source = self._weights[branch]  # SDCLR's sparse target: ξ stays dense, runs as ξ⊙M
            weights = {name: source[name] * self._masks[branch][name] for name in self._fit
                       if self._counts[branch][name][1] < self._counts["numel"][name]}
            return weights or None
        # θ · M (bool): cheaper than torch.where(M, θ, 0), forward and backward, on CPU (docs/sparsity.md)
        weights = {name: self._weights["online"][name] * self._masks[branch][name]
                   for name in self._fit if not self._covers_union(branch, name)}
        return weights or None

    def capture_(self, step: int) -> None:
        """After backward, before masking: keep |dense gradient| on RigL/GraNet update steps
        (without hooks; `step` is the optimizer step about to be taken)."""
        for name in self._fit:
            self._capture_one(name, step)

    def mask_gradients_(self) -> None:
        """grad ← grad ⊙ (union of the masks touching θ), so pruned weights stay exactly zero
        (without hooks)."""
        for name in self._fit:
            self._mask_one(name)

    def _union_full(self, name: str) -> bool:
        online, second, both = (self._counts["online"][name][1], self._counts["second"][name][1],
                                self._counts["both"][name])
        union = online + second - both if self.shared else online
        return union == self._counts["numel"][name]

    def update_(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> dict | None:
        """After optimizer step `step`: update score EMAs; on update steps set new masks, zero what
        they prune or grow (weights and optimizer state) and return the metrics record."""
        if step > self._step and step <= self._last_scored_step():
            for branch in self._tracked():
                for name in self._fit:
                    ema_magnitude_(self._scores[branch][name], self._weights[branch][name], beta=self.score_ema)
                self.work["score_ema_updates"] += 1
        if step <= self._step or not self._is_update(step):
            self._step = max(self._step, step)
            return None
        before = self._full_masks()
        density_online, density_second = self._densities(step)
        online = {name: self._masks["online"][name] for name in self._fit}
        second = online if self.policy.second == "same" else {n: self._masks["second"][n] for n in self._fit}
        if self.policy.reselect and (self.policy.cadence != "regrow" or step <= self.spec.ramp[1]):
            online, second = self._select((density_online, density_second), restrict=self.policy.shrink_only)
            self.work["mask_selections"] += selected_branches(self.policy)
        grown: Masks = {}
        if self.policy.regrow:
            online, grown = self._regrow(step, online)
            self.work["regrow_updates"] += 1 if grown else 0
            second = online if self.policy.second == "same" else second
        self._install(online, second, grown=grown, optimizer=optimizer)
        self._grads, self._step = {}, step
        return self._record(before)

    def remask_second_(self, tau: float) -> None:
        """Momentum methods, after the EMA target update ξ ← τξ + (1 − τ)θ with this `tau`.

        Nested policies (SyncCP): ξ += (1 − τ)·shadow on M_second \\ M_online, so the target's
        extra entries average the pruned weights' last online values instead of decaying to 0
        (module docstring); θ is exactly zero outside M_online ⊆ M_second and the shadow outside
        M_second, so ξ stays exactly zero outside M_second by itself. Other policies whose target
        mask does not contain the online one: ξ ← ξ ⊙ M_second. SDCLR's sparse target stays dense.
        """
        if self.shared or not self.policy.zero_pruned:
            return
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"EMA tau must be in [0, 1], got {tau}")
        shadowed = False
        with torch.no_grad():
            for name in self._fit:
                online, second = self._counts["online"][name][1], self._counts["second"][name][1]
                target = self._weights["second"][name]
                if self._keeps_shadow:
                    if second > online and tau < 1.0:
                        target.add_(self._shadow[name].to(target.dtype), alpha=1.0 - tau)
                        shadowed = True
                elif second < self._counts["numel"][name] and self._counts["both"][name] < online:
                    keep_only_(target, self._masks["second"][name])
        self.work["shadow_steps"] += shadowed

    def masks(self) -> dict[str, Tensor]:
        """{"online/<name>", "second/<name>"}: bool, CPU, contiguous copies (unfit layers: ones)."""
        return {f"{branch}/{name}": mask.detach().cpu().contiguous().clone()
                for branch, masks in self._full_masks().items() for name, mask in masks.items()}

    def summary(self) -> dict:
        """Densities per branch (total and per layer) and the layers left dense as unfit."""
        numel = self._counts["numel"]
        out = {}
        for branch in BRANCHES:
            kept = {name: c[1] for name, c in self._counts[branch].items()}
            out[branch] = {"total": sum(kept.values()) / max(1, sum(numel.values())),
                           "layers": {name: k / numel[name] for name, k in kept.items()}}
        out["work"] = dict(self.work)  # over the whole run (kept in the state across resumes)
        out["unfit_layers"] = [{"name": name, "shape": list(self._weights["online"][name].shape),
                                "reason": reason} for name, reason in self._unfit.items()]
        return out

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: masks, score EMAs, step, generator state."""
        return {"format": 2, "algorithm": self.algorithm, "granularity": self.pattern.granularity,
                "step": self._step, "generator": self._generator.get_state(),
                "masks": {b: {n: m.detach().clone() for n, m in self._masks[b].items()} for b in BRANCHES},
                "scores": {b: {n: s.detach().clone() for n, s in self._scores[b].items()} for b in BRANCHES},
                "shadow": {n: s.detach().clone() for n, s in self._shadow.items()},
                "work": dict(self.work)}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` output (masks move to the weights' devices)."""
        checks.check_state(state, algorithm=self.algorithm, granularity=self.pattern.granularity,
                           names=self._fit, weights=self._weights["online"])
        self._generator.set_state(state["generator"].cpu())
        self._scores = {b: {n: s.to(self._weights["online" if self.shared else b][n].device).clone()
                            for n, s in state["scores"].get(b, {}).items()} for b in BRANCHES}
        online = {n: m.to(self._weights["online"][n].device) for n, m in state["masks"]["online"].items()}
        second = online if self.policy.second == "same" else {
            n: m.to(self._weights["online"][n].device) for n, m in state["masks"]["second"].items()}
        self._install(online, second)
        self._shadow = {n: s.to(self._weights["online"][n].device).clone()
                        for n, s in state.get("shadow", {}).items()}  # not re-derived from θ
        self.work.update({k: int(v) for k, v in state.get("work", {}).items() if k in self.work})
        self._step, self._grads = int(state["step"]), {}
        self._record(self._full_masks())

