"""The Sparsifier's scoring state: score EMAs per branch and the captured dense gradients."""

from __future__ import annotations

from torch import Tensor

from synccp.sparsity.scores import ema_magnitude_, gradient_magnitude, magnitude

BRANCHES = ("online", "second")
Masks = dict[str, Tensor]


class ScoreState:
    """EMA of |w| for the tracked branches (`synccp.sparsity.algorithms.tracked_branches`) and
    |dense gradient| kept on RigL/GraNet update steps, for the fitting layers `fit`.

    A shared encoder scores θ for both branches; a momentum target scores ξ (dense for SDCLR's
    sparse target, whose forward is masked, so a pruned entry keeps a live EMA value and can
    come back).
    """

    def __init__(self, weights: dict[str, Masks], fit: list[str], *, shared: bool):
        self._weights = weights  # branch → name → weight (the second branch is θ when shared)
        self._fit = fit
        self._shared = shared
        self.emas: dict[str, Masks] = {branch: {} for branch in BRANCHES}
        self.gradients: Masks = {}

    def start(self, branches: tuple[str, ...]) -> None:
        """EMAs start at |w| of the (pruned initial) weights."""
        for branch in branches:
            self.emas[branch] = {name: magnitude(self._weights[branch][name]).clone()
                                 for name in self._fit}

    def of(self, branch: str) -> Masks:
        """Scores of each fitting layer: EMA of |w| when one is kept, else |w|."""
        source = "online" if self._shared else branch
        if self.emas[source]:
            return {name: self.emas[source][name] for name in self._fit}
        return {name: magnitude(self._weights[source][name]) for name in self._fit}

    def update_(self, branches: tuple[str, ...], beta: float) -> None:
        """EMA_β(|w|) ← β·EMA + (1 − β)·|w| in place, for each of `branches`."""
        for branch in branches:
            for name in self._fit:
                ema_magnitude_(self.emas[branch][name], self._weights[branch][name], beta=beta)

    def capture(self, name: str) -> None:
        """Keep |dense gradient| of the online weight `name` (before it is masked)."""
        weight = self._weights["online"][name]
        self.gradients[name] = gradient_magnitude(weight.grad, weight)

    def dense_gradients(self) -> Masks:
        """The captured gradients of every fitting layer (a layer that got none grows nothing)."""
        weights = self._weights["online"]
        return {name: self.gradients.get(name, gradient_magnitude(None, weights[name]))
                for name in self._fit}

    def restart_grown(self, grown: Masks) -> None:
        """Grown weights restart from |w| = 0 in the online EMA."""
        if self.emas["online"]:
            for name, entries in grown.items():
                self.emas["online"][name].masked_fill_(entries, 0.0)

    def state(self) -> dict:
        return {b: {n: s.detach().clone() for n, s in self.emas[b].items()} for b in BRANCHES}

    def load(self, state: dict) -> None:
        """Restore `state()` output, on the weights' devices; captured gradients are dropped."""
        self.emas = {b: {n: s.to(self._weights["online" if self._shared else b][n].device).clone()
                         for n, s in state.get(b, {}).items()} for b in BRANCHES}
        self.gradients = {}
