"""Dense and mask-exact sparse MAC counts per layer and phase (1 MAC = 2 FLOPs).

Rules (the same for every granularity; what the hardware can *skip* is accelerator.py's business):

- forward and dgrad skip pruned weights: sparse MACs = m · nnz, with m = B·H_o·W_o, i.e. the
  dense count times the layer's density.
- wgrad computes only the kept weights' gradients (an SDDMM) unless the algorithm needs dense
  gradients at that step: sparse MACs = (B·H_o·W_o) · nnz; dense when `dense_gradients`.
  `WGRAD_RULES` states the rule per algorithm.
"""

from __future__ import annotations

from synccp.cost.gemms import Layer, phase_gemm
from synccp.sparsity.registry import POLICIES, policy_for

WGRAD_RULES = {name: row.wgrad_rule for name, row in POLICIES.items()}  # the registry's rows


def needs_dense_gradients(algorithm: str, *, update_step: bool) -> bool:
    """True when `algorithm` needs the full weight gradient at this step (RigL/GraNet growth)."""
    return update_step and policy_for(algorithm).dense_gradients


def dense_macs(layer: Layer, phase: str, batch: int) -> int:
    """m·n·k of the phase's im2col GEMM."""
    return phase_gemm(layer, phase, batch).macs


def kept_weights(layer: Layer, density: float) -> int:
    """nnz of a layer at `density` (exact when `density` is the mask's own nnz/numel)."""
    return round(density * layer.numel)


def sparse_macs(layer: Layer, phase: str, batch: int, density: float, *,
                dense_gradients: bool = False) -> int:
    """MACs that touch a kept weight (forward, dgrad) or produce a kept gradient (wgrad)."""
    if phase == "wgrad" and dense_gradients:
        return dense_macs(layer, phase, batch)
    return batch * layer.positions * kept_weights(layer, density)
