"""Sparsity granularities: scores + density → boolean mask of the weight's shape.

A *unit* is what a mask keeps or drops as a whole: an element (unstructured), a group of M
consecutive weights along the GEMM reduction dimension (N:M, where a kept unit is a *dense* group
and a dropped one is an N:M group), a b_out × b_in tile (block) or an output filter (channel).
Weights are (C_out, C_in, *kernel) for convs and (out_features, in_features) for linear layers.
Layers whose shape does not fit a pattern are reported by `unfit_reason` and left dense by the
Sparsifier, never silently mis-pruned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

GRANULARITIES = ("unstructured", "nm", "block", "channel")


@dataclass(frozen=True)
class Pattern:
    """A granularity and its parameters: N:M (`n` < `m`) and the (b_out, b_in) `block` tile."""

    granularity: str = "unstructured"
    n: int = 2
    m: int = 4
    block: tuple[int, int] = (4, 4)

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"sparsity.granularity must be one of {', '.join(GRANULARITIES)}, "
                             f"got {self.granularity!r}")
        if not 1 <= self.n < self.m:
            raise ValueError(f"sparsity.n must be in [1, sparsity.m), got n={self.n}, m={self.m}")
        if len(self.block) != 2 or min(self.block) < 1:
            raise ValueError(f"sparsity.block_out/block_in must be >= 1, got block={self.block}")

    def describe(self) -> str:
        return {"unstructured": "element", "nm": f"{self.n}:{self.m}",
                "block": f"{self.block[0]}x{self.block[1]} block", "channel": "channel"}[self.granularity]


def kth_largest(flat: Tensor, count: int, *, direct: int = 1 << 18, sample: int = 1 << 16) -> Tensor:
    """The `count`-th largest entry of the 1-D `flat` (1 ≤ count ≤ numel), exactly, as a 0-d tensor.

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
    band = flat[at_least_lo & (flat <= hi)]  # (K,): the answer is the (count − above_hi)-th largest
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


def unfit_reason(shape: tuple[int, ...], pattern: Pattern) -> str | None:
    """Why a weight of `shape` cannot carry `pattern` (None when it can)."""
    if len(shape) < 2 and pattern.granularity in ("nm", "block"):
        return f"{pattern.describe()} needs a 2-D or 4-D weight, got shape {tuple(shape)}"
    if pattern.granularity == "nm" and shape[1] % pattern.m:
        return f"C_in={shape[1]} is not divisible by M={pattern.m}"
    if pattern.granularity == "block":
        b_out, b_in = pattern.block
        if shape[0] % b_out or shape[1] % b_in:
            return f"(C_out, C_in)=({shape[0]}, {shape[1]}) is not divisible by the block {b_out}x{b_in}"
    return None


def fits(shape: tuple[int, ...], pattern: Pattern) -> bool:
    return unfit_reason(shape, pattern) is None


def num_units(shape: tuple[int, ...], pattern: Pattern) -> int:
    numel = math.prod(shape)
    return numel // _unit_numel(shape, pattern)


def _unit_numel(shape: tuple[int, ...], pattern: Pattern) -> int:
    kind = pattern.granularity
    if kind == "nm":
        return pattern.m
    if kind == "block":
        return pattern.block[0] * pattern.block[1]
    if kind == "channel":
        return math.prod(shape) // shape[0]
    return 1


def unit_budget(shape: tuple[int, ...], pattern: Pattern) -> tuple[int, int]:
    """(base, step): a mask keeping k units keeps `base + k * step` elements."""
    if pattern.granularity == "nm":
        return num_units(shape, pattern) * pattern.n, pattern.m - pattern.n
    return 0, _unit_numel(shape, pattern)


def ideal_units(shape: tuple[int, ...], density: float, pattern: Pattern) -> float:
    """Real-valued number of kept units giving `density`, clipped to [0, units]."""
    base, step = unit_budget(shape, pattern)
    units = (density * math.prod(shape) - base) / step
    return min(max(units, 0.0), float(num_units(shape, pattern)))


def nm_groups(x: Tensor, m: int) -> Tensor:
    """(C_out, C_in, *k) → (G, M): M consecutive input channels, channels-last order."""
    return x.movedim(1, -1).reshape(-1, m)  # (C_out, *k, C_in) → (G, M)


def from_nm_groups(groups: Tensor, shape: tuple[int, ...]) -> Tensor:
    c_out, c_in, *kernel = shape
    return groups.reshape(c_out, *kernel, c_in).movedim(-1, 1)  # (C_out, C_in, *k)


def _blocks(x: Tensor, block: tuple[int, int]) -> Tensor:
    """(C_out, C_in, *k) → (C_out/b_out, b_out, C_in/b_in, b_in, K)."""
    c_out, c_in = x.shape[:2]
    b_out, b_in = block
    return x.reshape(c_out // b_out, b_out, c_in // b_in, b_in, -1)


def unit_scores(scores: Tensor, pattern: Pattern) -> Tensor:
    """(U,) score per unit: the element score, or the mean score of a group/block/channel.

    Scores are nonnegative importances (|w|, EMA of |w|, |gradient|). Means (L1 / unit size) keep
    block and channel scores comparable across layers.
    """
    kind = pattern.granularity
    if kind == "nm":
        return nm_groups(scores, pattern.m).mean(1)  # (G,)
    if kind == "block":
        return _blocks(scores, pattern.block).mean((1, 3)).reshape(-1)  # (Co/bo · Ci/bi · K,)
    if kind == "channel":
        return scores.reshape(scores.shape[0], -1).mean(1)  # (C_out,)
    return scores.reshape(-1)


def unit_all(mask: Tensor, pattern: Pattern) -> Tensor:
    """(U,) bool: units whose every element is set in `mask`."""
    kind = pattern.granularity
    if kind == "nm":
        return nm_groups(mask, pattern.m).all(1)
    if kind == "block":
        return _blocks(mask, pattern.block).all(3).all(1).reshape(-1)
    if kind == "channel":
        return mask.reshape(mask.shape[0], -1).all(1)
    return mask.reshape(-1)


def nm_group_mask(scores: Tensor, *, n: int, m: int) -> Tensor:
    """(G, M) bool: the N largest scores of every group of M (ties: lower index first).

    Ranks by M·(M − 1) comparisons of contiguous (G,) columns: several times faster than
    `topk(dim=1)` over millions of 4-wide rows on CPU.
    """
    columns = nm_groups(scores, m).t().contiguous()  # (M, G)
    keep = torch.empty_like(columns, dtype=torch.bool)
    for j in range(m):
        rank = torch.zeros_like(columns[j], dtype=torch.uint8)  # entries ranked above entry j
        for k in range(m):
            if k != j:
                rank += columns[k] >= columns[j] if k < j else columns[k] > columns[j]
        keep[j] = rank < n
    return keep.t()  # (G, M)


def mask_from_units(scores: Tensor, unit_mask: Tensor, pattern: Pattern) -> Tensor:
    """Expand a (U,) unit mask to the weight's shape; for N:M, dropped units become N:M groups."""
    shape = tuple(scores.shape)
    kind = pattern.granularity
    if kind == "nm":
        groups = nm_group_mask(scores, n=pattern.n, m=pattern.m) | unit_mask[:, None]  # (G, M)
        return from_nm_groups(groups, shape)
    if kind == "block":
        b_out, b_in = pattern.block
        tiles = unit_mask.reshape(shape[0] // b_out, 1, shape[1] // b_in, 1, -1)
        return tiles.expand(-1, b_out, -1, b_in, -1).reshape(shape)
    if kind == "channel":
        return unit_mask.reshape(-1, *([1] * (len(shape) - 1))).expand(shape).clone()
    return unit_mask.reshape(shape)


def granularity_mask(scores: Tensor, density: float, pattern: Pattern) -> Tensor:
    """Keep the top `density` of one weight's `scores` at `pattern` (round to the nearest unit)."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if pattern.granularity == "nm" and density < pattern.n / pattern.m - 1e-12:
        raise ValueError(f"density must be >= n/m = {pattern.n}/{pattern.m} for N:M, got {density}")
    reason = unfit_reason(tuple(scores.shape), pattern)
    if reason is not None:
        raise ValueError(f"weight does not fit {pattern.describe()}: {reason}")
    count = round(ideal_units(tuple(scores.shape), density, pattern))
    return mask_from_units(scores, keep_top(unit_scores(scores, pattern), count), pattern)


def unstructured_mask(scores: Tensor, density: float) -> Tensor:
    """Element-wise top-k: keep the round(density · numel) largest scores."""
    return granularity_mask(scores, density, Pattern("unstructured"))


def nm_mask(scores: Tensor, density: float, *, n: int, m: int) -> Tensor:
    """Hybrid N:M: a fraction f = (1 − d)/(1 − N/M) of the groups (lowest mean |score| first) keep
    their N largest entries, the others stay dense; d = N/M makes every group N:M."""
    return granularity_mask(scores, density, Pattern("nm", n=n, m=m))


def block_mask(scores: Tensor, density: float, *, block: tuple[int, int]) -> Tensor:
    """Top-k (b_out × b_in) tiles of the (C_out, C_in) plane at each kernel position, by L1."""
    return granularity_mask(scores, density, Pattern("block", block=block))


def channel_mask(scores: Tensor, density: float) -> Tensor:
    """Top-k whole output filters by mean |score|."""
    return granularity_mask(scores, density, Pattern("channel"))


def pattern_report(name: str, mask: Tensor, granularity: str | Pattern, *, n: int = 2, m: int = 4,
                   block: tuple[int, int] = (4, 4)) -> dict:
    """Check that `mask` follows a granularity exactly (for `synccp inspect`).

    `granularity` is a name (with `n`, `m`, `block`) or a `Pattern`. `valid` means strict: N:M ≤ N
    nonzeros in every group, whole blocks/filters on or off. For N:M, `hybrid_valid` also accepts
    dense groups (the ramp's dense-or-N:M layout). Unfit shapes report `fits=False`, and `valid`
    says whether the layer was left dense.
    """
    pattern = granularity if isinstance(granularity, Pattern) else Pattern(granularity, n=n, m=m,
                                                                           block=tuple(block))
    shape = tuple(mask.shape)
    report = {"name": name, "pattern": pattern.describe(), "density": float(mask.float().mean()),
              "fits": True, "valid": True, "violations": 0, "units": 0}
    reason = unfit_reason(shape, pattern)
    if reason is not None:
        report.update(fits=False, valid=bool(mask.all()), reason=reason)
        return report
    if pattern.granularity == "unstructured":
        report["units"] = mask.numel()
        return report
    if pattern.granularity == "nm":
        counts = nm_groups(mask, pattern.m).sum(1)  # (G,)
        over = counts > pattern.n
        report.update(units=counts.numel(), violations=int(over.sum()), valid=not bool(over.any()),
                      hybrid_valid=bool((~over | (counts == pattern.m)).all()),
                      nm_group_share=float((counts <= pattern.n).float().mean()))
        return report
    kept = unit_scores(mask.float(), pattern)  # (U,) share of each unit kept
    partial = (kept > 0) & (kept < 1)
    report.update(units=kept.numel(), violations=int(partial.sum()), valid=not bool(partial.any()))
    return report


def pattern_summary(reports: list[dict]) -> str:
    """One line such as "2:4 valid in 19/19 layers (1 unfit layer left dense)"."""
    if not reports:
        return "no prunable layers"
    fitting = [r for r in reports if r["fits"]]
    valid = sum(r["valid"] for r in fitting)
    text = f"{reports[0]['pattern']} valid in {valid}/{len(fitting)} layers"
    unfit = len(reports) - len(fitting)
    return text + (f" ({unfit} unfit layer{'s' * (unfit > 1)} left dense)" if unfit else "")
