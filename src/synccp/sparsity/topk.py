"""Exact top-k selection: the `count` largest scores, ties broken by position.

Allocation (`synccp.sparsity.allocation`) and drop-and-grow (`synccp.sparsity.algorithms`) pick
the top units of a granularity's unit scores (`synccp.sparsity.granularity`) with `keep_top`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def kth_largest(flat: Tensor, count: int, *, direct: int = 1 << 18,
                sample: int = 1 << 16) -> Tensor:
    """The `count`-th largest entry of the 1-D `flat` (1 ≤ count ≤ numel), exactly (0-d).

    Up to `direct` entries, or off the CPU (no host synchronisation there): `kthvalue`. Above, on
    CPU: a strided sample of about `sample` entries brackets the answer in [lo, hi] with a margin
    of four standard errors of the sample quantile; two counting passes check the bracket and only
    the entries inside it go through `kthvalue` (3–5× faster than `kthvalue` over 11 M scores,
    docs/sparsity.md). A bracket that misses falls back to `kthvalue` over everything: never
    wrong, only slower.
    """
    total = flat.numel()
    if total <= direct or flat.device.type != "cpu":
        return flat.kthvalue(total - count + 1).values
    picked = flat[::max(1, total // sample)]  # (S,)
    size = picked.numel()
    quantile = 1.0 - count / total  # the answer's position from the bottom, as a fraction
    margin = 4.0 * math.sqrt(max(quantile * (1.0 - quantile), 1.0 / size) / size) + 2.0 / size
    ordered = picked.sort().values
    lo = ordered[min(size - 1, max(0, math.floor((quantile - margin) * size)))]
    hi = ordered[min(size - 1, max(0, math.ceil((quantile + margin) * size)))]
    at_least_lo = flat >= lo
    above_hi = int(torch.count_nonzero(flat > hi))
    if not above_hi < count <= int(torch.count_nonzero(at_least_lo)):
        return flat.kthvalue(total - count + 1).values
    band = flat[at_least_lo & (flat <= hi)]  # (K,): the answer is its (count − above_hi)-th largest
    return band.kthvalue(band.numel() - (count - above_hi) + 1).values


def keep_top(scores: Tensor, count: int) -> Tensor:
    """Boolean mask with exactly `count` True entries at the largest `scores` (ties: first first).

    O(numel) selection (`kth_largest`). On CPU one host check skips the tie-breaking cumsum in the
    usual case where every entry equal to the threshold is kept; on accelerators the cumsum runs
    unconditionally, so there is no host synchronisation. Both give the same mask.
    """
    flat = scores.reshape(-1)  # (U,)
    total = flat.numel()
    if count <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if count >= total:
        return torch.ones_like(scores, dtype=torch.bool)
    threshold = kth_largest(flat, count)
    kept = flat >= threshold
    surplus = torch.count_nonzero(kept) - count  # ties at the threshold beyond the budget
    if flat.device.type == "cpu" and int(surplus) == 0:
        return kept.view(scores.shape)
    tied = flat == threshold
    last_ties = tied.flip(0).cumsum(0, dtype=torch.int32).flip(0) <= surplus  # drop the last ties
    return (kept & ~(tied & last_ties)).view(scores.shape)
