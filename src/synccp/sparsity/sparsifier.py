r"""The Sparsifier: the only stateful sparsity object (masks, score EMAs, captured gradients).

It composes the pure pieces (spec × scores × allocation × granularity × algorithm row) and two
pieces of state: the masks (`branch_masks.BranchMasks`: install, union, shadow, counts) and the
scores (`score_state.ScoreState`: EMAs, captured gradients). In any training loop (README,
"Use it from your own training code"):

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
from typing import TypeAlias

import torch
from torch import Tensor, nn

from synccp.models.ema import ema_update_
from synccp.sparsity import checks, choice
from synccp.sparsity.algorithms import (
    last_scored_step,
    select_masks,
    selected_branches,
    tracked_branches,
)
from synccp.sparsity.branch_masks import BRANCHES, BranchMasks, Masks
from synccp.sparsity.granularity import Pattern
from synccp.sparsity.registry import Policy
from synccp.sparsity.score_state import ScoreState
from synccp.sparsity.selection import Include, matching_weights, prunable_weights
from synccp.sparsity.spec import SparsitySpec, resolve_spec

LOG = logging.getLogger(__name__)
Weights: TypeAlias = "nn.Module | Mapping[str, Tensor]"
WORK = ("score_ema_updates", "mask_selections", "regrow_updates", "shadow_steps")


class Sparsifier:
    """Masks of the online and second branch of one model; see the module docstring."""

    def __init__(self, model: Weights, spec: SparsitySpec | None = None, *,
                 target: Weights | None = None, optimizer: torch.optim.Optimizer | None = None,
                 include: Include | None = None, hooks: bool = True, **settings):
        """`model`: a module (its prunable weights chosen by `include`, default
        `selection.default_include`) or a mapping name → weight taken as is. `spec`, or
        `SparsitySpec` fields as keywords (the paper's defaults for the rest; `total_steps` is
        required). `target`: the EMA target of a momentum method (a module of the same structure,
        or a mapping with the same names); None shares one module between both masks.
        `optimizer`: the state of pruned weights is zeroed in it. `hooks`: mask gradients (and
        keep RigL/GraNet's dense gradients) by hooks, so no call is needed before
        `optimizer.step()`."""
        self.spec = spec = resolve_spec(spec, settings)
        online: dict[str, Tensor] = (dict(model) if isinstance(model, Mapping)
                                     else prunable_weights(model, include))
        second = None if target is None else (
            dict(target) if isinstance(target, Mapping) else matching_weights(target, online))
        checks.check_weights(online=online, second=second)
        self.policy: Policy = spec.policy
        checks.check_branch_rule(self.policy, algorithm=spec.algorithm, shared=second is None,
                                 sparse_branch=spec.sparse_branch)
        self.drop_fraction, self._regrow_end = spec.regrow_window()
        # (online, target) modules: for step(tau)'s EMA and encoder(); None for mappings
        self._modules: tuple[nn.Module | None, nn.Module | None] = (
            (model, target if isinstance(target, nn.Module) else None)
            if isinstance(model, nn.Module) else (None, None))
        self._optimizer = optimizer
        self._weights = {"online": dict(online),
                         "second": dict(online if second is None else second)}
        self.shared = second is None
        self._unfit = {} if spec.algorithm == "dense" else {
            name: reason for name, p in online.items()
            if (reason := self.pattern.unfit_reason(tuple(p.shape))) is not None}
        self._fit = [name for name in online if name not in self._unfit]
        checks.log_choices(LOG, self._unfit, online, pattern=self.pattern,
                           allocation=spec.allocation, density=spec.density,
                           algorithm=spec.algorithm)
        self._generator = torch.Generator().manual_seed(spec.seed)
        self._masks = BranchMasks(self._weights, self._fit, list(self._unfit),
                                  shared=self.shared, policy=self.policy)
        self._scores = ScoreState(self._weights, self._fit, shared=self.shared)
        self._step = 0
        self.work = dict.fromkeys(WORK, 0)  # per branch (and step): what the cost model charges
        self._initial = self._prepare()
        self._handles = [
            self._weights["online"][name].register_post_accumulate_grad_hook(self._hook(name))
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

    # ----------------------------------------------------------------- choosing masks
    def _last_scored_step(self) -> int:
        """The last step whose update reads scores (EMAs need no updating after it)."""
        return last_scored_step(self.policy, end_step=self.spec.ramp[1],
                                regrow_end_step=self._regrow_end,
                                total_steps=self.spec.total_steps)

    def _tracked(self) -> tuple[str, ...]:
        return tracked_branches(self.policy, shared=self.shared, score_ema=self.score_ema)

    def _select(self, densities: tuple[float, float], *, restrict: bool) -> tuple[Masks, Masks]:
        previous = ((self._masks.current("online"), self._masks.current("second"))
                    if restrict else None)
        online = self._scores.of("online")
        second = (online if self.shared or self.policy.second == "same"
                  else self._scores.of("second"))
        return select_masks(self.policy, online, second, densities=densities, previous=previous,
                            allocation=self.spec.allocation, pattern=self.pattern)

    def _regrow(self, step: int, online: Masks) -> tuple[Masks, Masks]:
        """RigL/GraNet drop-and-grow of the online masks with the cosine-decayed fraction."""
        if self.spec.drop_fraction_at(step) <= 0.0:
            return online, {}
        gradients = self._scores.dense_gradients() if self._scores.gradients else None
        return choice.drop_and_grow(self.spec, step, online, scores=self._scores.of("online"),
                                    gradients=gradients)

    def _prepare(self) -> dict:
        """Initial masks at the step-0 density; zero pruned weights; the metrics record
        (oscillation relative to the dense all-ones start)."""
        ones = {name: torch.ones_like(w, dtype=torch.bool)
                for name, w in self._weights["online"].items()}
        before = {branch: ones for branch in BRANCHES}
        weights = {name: self._weights["online"][name] for name in self._fit}
        online, second = choice.initial_masks(
            self.spec, weights, generator=self._generator,
            select=lambda densities: self._select(densities, restrict=False))
        self._masks.install(online, second)
        self._scores.start(self._tracked())  # EMAs start at |w| of the pruned initial weights
        return self._masks.record(before)

    def _hook(self, name: str) -> Callable[[Tensor], None]:
        def on_gradient(weight: Tensor) -> None:  # after the gradient of `weight` is accumulated
            self._capture_one(name, self._step + 1)
            self._masks.mask_gradient_(name)

        return on_gradient

    def _capture_one(self, name: str, step: int) -> None:
        if (self.policy.regrow and self.spec.is_update(step)
                and self.spec.drop_fraction_at(step) > 0.0):
            self._scores.capture(name)

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
            self._masks.keep_union_()
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
            use_target = branch == "second" and not self.shared
            module = self._modules[1] if use_target else self._modules[0]
            if module is None:
                raise ValueError("encoder() needs `module` when the Sparsifier was built from a "
                                 "mapping")
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
        return self._masks.branch_weights(branch)

    def capture_(self, step: int) -> None:
        """After backward, before masking: keep |dense gradient| on RigL/GraNet update steps
        (without hooks; `step` is the optimizer step about to be taken)."""
        for name in self._fit:
            self._capture_one(name, step)

    def mask_gradients_(self) -> None:
        """grad ← grad ⊙ (union of the masks touching θ), so pruned weights stay exactly zero
        (without hooks)."""
        for name in self._fit:
            self._masks.mask_gradient_(name)

    def update_(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> dict | None:
        """After optimizer step `step`: update score EMAs; on update steps set new masks, zero
        what they prune or grow (weights and optimizer state) and return the metrics record."""
        if step > self._step and step <= self._last_scored_step():
            tracked = self._tracked()
            self._scores.update_(tracked, self.score_ema)
            self.work["score_ema_updates"] += len(tracked)
        if step <= self._step or not self.spec.is_update(step):
            self._step = max(self._step, step)
            return None
        before = self._masks.full()
        policy = self.policy
        online = self._masks.current("online")
        second = online if policy.second == "same" else self._masks.current("second")
        if policy.reselect and (policy.cadence != "regrow" or step <= self.spec.ramp[1]):
            online, second = self._select(self.spec.densities(step), restrict=policy.shrink_only)
            self.work["mask_selections"] += selected_branches(policy)
        grown: Masks = {}
        if policy.regrow:
            online, grown = self._regrow(step, online)
            self.work["regrow_updates"] += 1 if grown else 0
            second = online if policy.second == "same" else second
        self._masks.install(online, second, grown=grown, optimizer=optimizer)
        self._scores.restart_grown(grown)
        self._scores.gradients, self._step = {}, step
        return self._masks.record(before)

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
        self.work["shadow_steps"] += self._masks.remask_second_(tau)

    def masks(self) -> dict[str, Tensor]:
        """{"online/<name>", "second/<name>"}: bool, CPU, contiguous copies (unfit layers: ones)."""
        return self._masks.export()

    def summary(self) -> dict:
        """Densities per branch (total and per layer) and the layers left dense as unfit."""
        out = self._masks.densities()
        out["work"] = dict(self.work)  # over the whole run (kept in the state across resumes)
        out["unfit_layers"] = [{"name": name, "shape": list(self._weights["online"][name].shape),
                                "reason": reason} for name, reason in self._unfit.items()]
        return out

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: masks, score EMAs, step, generator state."""
        return {"format": 2, "algorithm": self.algorithm, "granularity": self.pattern.granularity,
                "step": self._step, "generator": self._generator.get_state(),
                **self._masks.state(), "scores": self._scores.state(), "work": dict(self.work)}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()` output (masks move to the weights' devices)."""
        checks.check_state(state, algorithm=self.algorithm,
                           granularity=self.pattern.granularity, names=self._fit,
                           weights=self._weights["online"])
        self._generator.set_state(state["generator"].cpu())
        self._scores.load(state["scores"])
        self._masks.load(state)
        self.work.update({k: int(v) for k, v in state.get("work", {}).items() if k in self.work})
        self._step = int(state["step"])
