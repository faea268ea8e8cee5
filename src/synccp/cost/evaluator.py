"""Per-step cost of a workload: every GEMM of a step at the per-layer densities in force, on the
accelerator model, cached by (layer, branch, density, dense gradient); `integrate` sums it over
the run's density intervals."""

from __future__ import annotations

import zlib
from collections import defaultdict

import torch

from synccp.cost import structure
from synccp.cost.accelerator import Accelerator, PhaseCost, phase_cost
from synccp.cost.gemms import Layer, pass_phases
from synccp.cost.timeline import Interval, interval_at
from synccp.cost.workload import Workload
from synccp.specs import RunSpec

Key = tuple[str, str, str]  # (layer weight name, phase, "branch/view")


class Evaluator:
    """Per-step phase costs of a workload, cached by (layer, branch, density, dense gradient)."""

    def __init__(self, workload: Workload, spec: RunSpec, accel: Accelerator,
                 masks: dict[str, torch.Tensor] | None):
        self.workload, self.spec, self.accel, self.masks = workload, spec, accel, masks or {}
        self._states: dict[tuple[str, str, float], structure.LayerSparsity | None] = {}
        self._costs: dict[tuple, PhaseCost] = {}
        self._samplers: dict[
            str, structure.RandomMask
        ] = {}  # one random draw per layer, every density

    def state(self, layer: Layer, branch: str, density: float) -> structure.LayerSparsity | None:
        key = (layer.name, branch, density)
        if key not in self._states:
            self._states[key] = None if density >= 1.0 else self._new_state(layer, branch, density)
        return self._states[key]

    def _new_state(self, layer: Layer, branch: str, density: float) -> structure.LayerSparsity:
        s = self.spec.sparsity
        mask = self.masks.get(f"{branch}/{layer.name}")
        if mask is not None and s.granularity != "channel":
            final = self.state_of_mask(layer, branch, mask)
            if density >= final.density - 1.0 / layer.numel:
                return (
                    final
                    if density <= final.density + 1.0 / layer.numel
                    else structure.interpolate(final, density)
                )
        generator = torch.Generator().manual_seed(
            self.spec.train.seed + zlib.crc32(layer.name.encode())
        )
        block = (s.block_out, s.block_in) if s.granularity == "block" else (1, 1)
        if s.granularity in ("unstructured", "block") and layer.name not in self._samplers:
            self._samplers[layer.name] = structure.RandomMask(layer.weight_shape, block, generator)
        return structure.from_density(
            layer.weight_shape,
            density,
            granularity=s.granularity,
            n=s.n,
            m=s.m,
            block=(s.block_out, s.block_in),
            generator=generator,
            sampler=self._samplers.get(layer.name),
        )

    def state_of_mask(
        self, layer: Layer, branch: str, mask: torch.Tensor
    ) -> structure.LayerSparsity:
        key = (layer.name, branch, -1.0)
        if key not in self._states:
            self._states[key] = structure.from_mask(
                mask.reshape(layer.weight_shape), n=self.spec.sparsity.n, m=self.spec.sparsity.m
            )
        return self._states[key]

    def step(
        self, densities: dict[str, dict[str, float]], *, dense_gradients: bool = False
    ) -> dict[Key, PhaseCost]:
        """Cost of every (layer, phase, branch/view) of one step at `densities`."""
        costs: dict[Key, PhaseCost] = {}
        for training_pass in self.workload.passes:
            for layer in self.workload.layers:
                if layer.part not in training_pass.parts:
                    continue
                density = densities.get(training_pass.branch, {}).get(layer.name, 1.0)
                for phase in pass_phases(layer, training_pass):
                    key = (layer.name, phase, f"{training_pass.branch}/{training_pass.view}")
                    costs[key] = self._phase(
                        layer,
                        phase,
                        training_pass.branch,
                        density,
                        dense_gradients and phase == "wgrad",
                    )
        return costs

    def _phase(
        self, layer: Layer, phase: str, branch: str, density: float, dense_gradients: bool
    ) -> PhaseCost:
        key = (layer.name, phase, branch, density, dense_gradients)
        if key not in self._costs:
            s = self.spec.sparsity
            self._costs[key] = phase_cost(
                layer,
                phase,
                self.workload.batch,
                self.state(layer, branch, density),
                granularity=s.granularity,
                n=s.n,
                m=s.m,
                dense_gradients=dense_gradients,
                accel=self.accel,
            )
        return self._costs[key]


def integrate(
    evaluator: Evaluator,
    intervals: list[Interval],
    updates: list[int],
    *,
    dense_gradient_updates: bool,
) -> dict[Key, dict[str, float]]:
    """Σ over steps of each entry's cost at the density in force; RigL/GraNet update steps swap
    the sparse wgrad for a dense one."""
    run: dict[Key, dict[str, float]] = defaultdict(
        lambda: {"macs": 0, "cycles": 0.0, "energy_pj": 0.0}
    )
    for interval in intervals:
        for key, cost in evaluator.step(interval.densities).items():
            _add(run[key], cost, interval.steps)
    if dense_gradient_updates:
        for update in updates:
            densities = interval_at(intervals, update - 1).densities
            sparse, dense = (
                evaluator.step(densities),
                evaluator.step(densities, dense_gradients=True),
            )
            for key in (k for k in dense if k[1] == "wgrad"):
                _add(run[key], dense[key], 1)
                _add(run[key], sparse[key], -1)
    return dict(run)


def _add(total: dict[str, float], cost: PhaseCost, times: int) -> None:
    total["macs"] += cost.macs * times
    total["cycles"] += cost.cycles * times
    total["energy_pj"] += cost.energy_pj * times
