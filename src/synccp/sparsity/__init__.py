"""Sparse training of both contrastive branches: SyncCP and its baselines (DESIGN.md §1).

Pure pieces — granularity × score × allocation × schedule × algorithm policy — composed by the
one stateful object, `Sparsifier`. See docs/sparsity.md.
"""

from synccp.sparsity.allocation import ALLOCATIONS, allocate_masks, erk_densities, uniform_densities
from synccp.sparsity.granularity import (GRANULARITIES, Pattern, block_mask, channel_mask, fits,
                                         granularity_mask, nm_mask, pattern_report, pattern_summary,
                                         unfit_reason, unstructured_mask)
from synccp.sparsity.oscillation import iou, mask_metrics, oscillation
from synccp.sparsity.registry import ALGORITHMS, POLICIES, Policy, policy_for
from synccp.sparsity.schedule import (branch_densities, constant_density,
                                      cosine_drop_fraction, cubic_density, is_update_step)
from synccp.sparsity.sparsifier import Sparsifier
from synccp.sparsity.spec import SparsitySpec

__all__ = ["ALGORITHMS", "ALLOCATIONS", "GRANULARITIES", "POLICIES", "Pattern", "Policy", "Sparsifier",
           "SparsitySpec",
           "allocate_masks", "block_mask", "branch_densities", "channel_mask", "constant_density",
           "cosine_drop_fraction", "cubic_density", "erk_densities", "fits", "granularity_mask", "iou",
           "is_update_step", "mask_metrics", "nm_mask", "oscillation", "pattern_report", "pattern_summary",
           "policy_for", "unfit_reason", "uniform_densities", "unstructured_mask"]
