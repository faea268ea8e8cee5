"""Sparse training of both contrastive branches: SyncCP and its baselines (DESIGN.md §1).

Pure pieces — granularity × score × allocation × schedule × algorithm policy — composed by the
one stateful object, `Sparsifier`. See docs/sparsity.md.
"""

_LAZY = {
    "ALGORITHMS": "synccp.sparsity.registry",
    "ALLOCATIONS": "synccp.sparsity.allocation",
    "GRANULARITIES": "synccp.sparsity.granularity",
    "PATTERNS": "synccp.sparsity.granularity",
    "POLICIES": "synccp.sparsity.registry",
    "Pattern": "synccp.sparsity.granularity",
    "Policy": "synccp.sparsity.registry",
    "Sparsifier": "synccp.sparsity.sparsifier",
    "SparsitySpec": "synccp.sparsity.spec",
    "allocate_masks": "synccp.sparsity.allocation",
    "branch_densities": "synccp.sparsity.schedule",
    "constant_density": "synccp.sparsity.schedule",
    "cosine_drop_fraction": "synccp.sparsity.schedule",
    "cubic_density": "synccp.sparsity.schedule",
    "erk_densities": "synccp.sparsity.allocation",
    "iou": "synccp.sparsity.oscillation",
    "is_update_step": "synccp.sparsity.schedule",
    "mask_metrics": "synccp.sparsity.oscillation",
    "oscillation": "synccp.sparsity.oscillation",
    "pattern_for": "synccp.sparsity.granularity",
    "pattern_report": "synccp.sparsity.pattern_report",
    "pattern_summary": "synccp.sparsity.pattern_report",
    "policy_for": "synccp.sparsity.registry",
    "uniform_densities": "synccp.sparsity.allocation",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Import on first use: `synccp.config` reads the registry without importing torch."""
    if name not in _LAZY:
        raise AttributeError(f"module 'synccp.sparsity' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
