"""The granularity registry: one frozen row (a `Pattern`) per granularity, owning what it means.

A *unit* is what a mask keeps or drops as a whole: an element (unstructured), a group of M
consecutive weights along the GEMM reduction dimension (N:M, where a kept unit is a *dense* group
and a dropped one is an N:M group), a b_out × b_in tile (block) or an output filter (channel).
Weights are (C_out, C_in, *kernel) for convs and (out_features, in_features) for linear layers.

A row holds its fit check (`unfit_reason`: layers that do not fit are left dense by the
Sparsifier, never silently mis-pruned), its unit views (`unit_scores`, `unit_all`) and the
expansion of kept units to a mask (`mask_from_units`, N:M's top N per group included), its
density semantics (`unit_budget`, `final_density`, `allocation_for`), its description for
`synccp inspect` and its validity check (`check`, which `pattern_report.py` reports). Allocation
(`allocation.py`) picks the top units by score; config choices, the spec and the schedule read
`PATTERNS`. Adding a granularity is adding a row. The module needs no torch import (tensors are
used through their methods), so `synccp.config` and the schedule read the rows without importing
torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch import Tensor

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Pattern:
    """One granularity; the base row keeps elements one by one (override what differs)."""

    granularity: ClassVar[str]
    keys: ClassVar[str] = "sparsity.granularity"  # the config keys that decide whether a layer fits
    entry_choice: ClassVar[bool] = False  # a dropped unit keeps entries chosen by element score
    regrowth: ClassVar[str] = "units"  # drop-and-grow swaps whole units ("units") or entries
    #                                    inside N:M groups ("nm_groups"): synccp.sparsity.algorithms

    def describe(self) -> str:
        """The pattern in words, as `synccp inspect` prints it ("2:4", "4x4 block")."""
        return self.granularity

    def unfit_reason(self, shape: Shape) -> str | None:
        """Why a weight of `shape` cannot carry this pattern (None when it can)."""
        return None

    def fits(self, shape: Shape) -> bool:
        return self.unfit_reason(shape) is None

    def unit_numel(self, shape: Shape) -> int:
        return 1

    def num_units(self, shape: Shape) -> int:
        return math.prod(shape) // self.unit_numel(shape)

    def unit_budget(self, shape: Shape) -> tuple[int, int]:
        """(base, step): a mask keeping k units keeps `base + k * step` elements."""
        return 0, self.unit_numel(shape)

    def ideal_units(self, shape: Shape, density: float) -> float:
        """Real-valued number of kept units giving `density`, clipped to [0, units]."""
        base, step = self.unit_budget(shape)
        units = (density * math.prod(shape) - base) / step
        return min(max(units, 0.0), float(self.num_units(shape)))

    def final_density(self, density: float) -> float:
        """The density a run ends at when `sparsity.density` asks for `density`."""
        return density

    def allocation_for(self, allocation: str) -> str:
        """The allocation this pattern runs when `sparsity.allocation` asks for `allocation`."""
        return allocation

    def notes(self, *, allocation: str, density: float) -> list[str]:
        """Settings this pattern overrides, in words for the log."""
        return []

    def unit_scores(self, scores: Tensor) -> Tensor:
        """(U,) score per unit: the element score, or the mean score of a group/block/channel.

        Scores are nonnegative importances (|w|, EMA of |w|, |gradient|). Means (L1 / unit size)
        keep block and channel scores comparable across layers.
        """
        return scores.reshape(-1)

    def unit_all(self, mask: Tensor) -> Tensor:
        """(U,) bool: units whose every element is set in `mask`."""
        return mask.reshape(-1)

    def mask_from_units(self, scores: Tensor, unit_mask: Tensor) -> Tensor:
        """Expand a (U,) unit mask to the weight's shape (`scores` gives the shape and, for N:M,
        the entries a dropped unit keeps)."""
        return unit_mask.reshape(scores.shape)

    def active_units(self, mask: Tensor) -> Tensor:
        """0-d count of the units drop-and-grow may drop: the active units."""
        return self.unit_all(mask).count_nonzero()

    def check(self, mask: Tensor) -> dict:
        """Units and violations of `mask` (a weight that fits): `valid` means strict, whole units
        on or off."""
        kept = self.unit_scores(mask.float())  # (U,) share of each unit kept
        partial = (kept > 0) & (kept < 1)
        return {"units": kept.numel(), "violations": int(partial.sum()),
                "valid": not bool(partial.any())}


@dataclass(frozen=True)
class Unstructured(Pattern):
    """Element-wise top-k: any entry may be zero."""

    granularity: ClassVar[str] = "unstructured"

    def describe(self) -> str:
        return "element"

    def check(self, mask: Tensor) -> dict:
        return {"units": mask.numel(), "violations": 0, "valid": True}


@dataclass(frozen=True)
class NM(Pattern):
    """Hybrid N:M (`n` < `m`): a fraction f = (1 − d)/(1 − N/M) of the groups of M consecutive
    input channels (channels-last order; lowest mean score first) keep their N largest entries,
    the others stay dense; d = N/M makes every group N:M, and a run ends there."""

    n: int = 2
    m: int = 4
    granularity: ClassVar[str] = "nm"
    keys: ClassVar[str] = "sparsity.n/sparsity.m"
    entry_choice: ClassVar[bool] = True
    regrowth: ClassVar[str] = "nm_groups"

    def __post_init__(self) -> None:
        check_nm(self.n, self.m)

    def describe(self) -> str:
        return f"{self.n}:{self.m}"

    def unfit_reason(self, shape: Shape) -> str | None:
        if len(shape) < 2:
            return f"{self.describe()} needs a 2-D or 4-D weight, got shape {tuple(shape)}"
        if shape[1] % self.m:
            return f"C_in={shape[1]} is not divisible by M={self.m}"
        return None

    def unit_numel(self, shape: Shape) -> int:
        return self.m

    def unit_budget(self, shape: Shape) -> tuple[int, int]:
        return self.num_units(shape) * self.n, self.m - self.n

    def final_density(self, density: float) -> float:
        return self.n / self.m

    def allocation_for(self, allocation: str) -> str:
        """Uniform per-layer fractions of N:M groups: a global threshold or ERK could ask a
        layer for less than N/M, which N:M cannot express."""
        return "uniform"

    def notes(self, *, allocation: str, density: float) -> list[str]:
        notes = []
        if allocation != "uniform":
            notes.append(f"N:M uses uniform per-layer group fractions; "
                         f"sparsity.allocation={allocation!r} is ignored")
        if abs(density - self.n / self.m) > 1e-9:
            notes.append(f"N:M final density is n/m = {self.n}/{self.m}; "
                         f"sparsity.density={density} is ignored")
        return notes

    def groups(self, x: Tensor) -> Tensor:
        """(C_out, C_in, *k) → (G, M): M consecutive input channels, channels-last order."""
        return x.movedim(1, -1).reshape(-1, self.m)  # (C_out, *k, C_in) → (G, M)

    def from_groups(self, groups: Tensor, shape: Shape) -> Tensor:
        c_out, c_in, *kernel = shape
        return groups.reshape(c_out, *kernel, c_in).movedim(-1, 1)  # (C_out, C_in, *k)

    def unit_scores(self, scores: Tensor) -> Tensor:
        return self.groups(scores).mean(1)  # (G,)

    def unit_all(self, mask: Tensor) -> Tensor:
        return self.groups(mask).all(1)

    def top_n(self, scores: Tensor, like: Tensor) -> Tensor:
        """(G, M) bool: the N largest scores of every group of M (ties: lower index first);
        `like` is a bool tensor on the scores' device (the result takes its dtype).

        Ranks by M·(M − 1) comparisons of contiguous (G,) columns: several times faster than
        `topk(dim=1)` over millions of 4-wide rows on CPU.
        """
        columns = self.groups(scores).t().contiguous()  # (M, G)
        keep = like.new_empty(columns.shape)
        for j in range(self.m):
            rank: Tensor | None = None  # (G,) uint8: entries ranked above entry j
            for k in range(self.m):
                if k != j:
                    above = columns[k] >= columns[j] if k < j else columns[k] > columns[j]
                    rank = above.byte() if rank is None else rank.add_(above)
            assert rank is not None  # m >= 2 (check_nm)
            keep[j] = rank < self.n
        return keep.t()  # (G, M)

    def mask_from_units(self, scores: Tensor, unit_mask: Tensor) -> Tensor:
        """Kept units are dense groups; dropped ones keep their N largest scores."""
        groups = self.top_n(scores, unit_mask) | unit_mask[:, None]  # (G, M)
        return self.from_groups(groups, tuple(scores.shape))

    def active_units(self, mask: Tensor) -> Tensor:
        """The active entries of N:M groups (dense groups are left alone)."""
        groups = self.groups(mask)  # (G, M)
        return (groups & (groups.sum(1, keepdim=True) < self.m)).count_nonzero()

    def check(self, mask: Tensor) -> dict:
        """`valid`: ≤ N nonzeros in every group; `hybrid_valid` also accepts dense groups (the
        ramp's dense-or-N:M layout); `nm_group_share`: the share of groups that are N:M."""
        counts = self.groups(mask).sum(1)  # (G,)
        over = counts > self.n
        return {"units": counts.numel(), "violations": int(over.sum()),
                "valid": not bool(over.any()),
                "hybrid_valid": bool((~over | (counts == self.m)).all()),
                "nm_group_share": float((counts <= self.n).float().mean())}


@dataclass(frozen=True)
class Block(Pattern):
    """Whole (b_out × b_in) tiles of the (C_out, C_in) plane at each kernel position, by mean
    score."""

    block: tuple[int, int] = (4, 4)
    granularity: ClassVar[str] = "block"
    keys: ClassVar[str] = "sparsity.block_out/sparsity.block_in"

    def __post_init__(self) -> None:
        object.__setattr__(self, "block", tuple(self.block))
        check_block(self.block)

    def describe(self) -> str:
        return f"{self.block[0]}x{self.block[1]} block"

    def unfit_reason(self, shape: Shape) -> str | None:
        if len(shape) < 2:
            return f"{self.describe()} needs a 2-D or 4-D weight, got shape {tuple(shape)}"
        b_out, b_in = self.block
        if shape[0] % b_out or shape[1] % b_in:
            return (f"(C_out, C_in)=({shape[0]}, {shape[1]}) is not divisible by the block "
                    f"{b_out}x{b_in}")
        return None

    def unit_numel(self, shape: Shape) -> int:
        return self.block[0] * self.block[1]

    def tiles(self, x: Tensor) -> Tensor:
        """(C_out, C_in, *k) → (C_out/b_out, b_out, C_in/b_in, b_in, K)."""
        c_out, c_in = x.shape[:2]
        b_out, b_in = self.block
        return x.reshape(c_out // b_out, b_out, c_in // b_in, b_in, -1)

    def unit_scores(self, scores: Tensor) -> Tensor:
        return self.tiles(scores).mean((1, 3)).reshape(-1)  # (Co/bo · Ci/bi · K,)

    def unit_all(self, mask: Tensor) -> Tensor:
        return self.tiles(mask).all(3).all(1).reshape(-1)

    def mask_from_units(self, scores: Tensor, unit_mask: Tensor) -> Tensor:
        shape = tuple(scores.shape)
        b_out, b_in = self.block
        tiles = unit_mask.reshape(shape[0] // b_out, 1, shape[1] // b_in, 1, -1)
        return tiles.expand(-1, b_out, -1, b_in, -1).reshape(shape)


@dataclass(frozen=True)
class Channel(Pattern):
    """Whole output filters, by mean score."""

    granularity: ClassVar[str] = "channel"

    def unit_numel(self, shape: Shape) -> int:
        return math.prod(shape) // shape[0]

    def unit_scores(self, scores: Tensor) -> Tensor:
        return scores.reshape(scores.shape[0], -1).mean(1)  # (C_out,)

    def unit_all(self, mask: Tensor) -> Tensor:
        return mask.reshape(mask.shape[0], -1).all(1)

    def mask_from_units(self, scores: Tensor, unit_mask: Tensor) -> Tensor:
        shape = tuple(scores.shape)
        return unit_mask.reshape(-1, *([1] * (len(shape) - 1))).expand(shape).clone()


PATTERNS: dict[str, type[Pattern]] = {row.granularity: row
                                      for row in (Unstructured, NM, Block, Channel)}
GRANULARITIES = tuple(PATTERNS)  # in report order


def check_nm(n: int, m: int) -> None:
    if not 1 <= n < m:
        raise ValueError(f"sparsity.n must be in [1, sparsity.m), got n={n}, m={m}")


def check_block(block: tuple[int, ...]) -> None:
    if len(block) != 2 or min(block) < 1:
        raise ValueError(f"sparsity.block_out/block_in must be >= 1, got block={block}")


def pattern_for(granularity: str, *, n: int = 2, m: int = 4,
                block: tuple[int, int] = (4, 4)) -> Pattern:
    """The row of `granularity` with its parameters. The N:M and block settings are validated
    whatever the granularity (errors name `sparsity.granularity`, `sparsity.n`, ...)."""
    if granularity not in PATTERNS:
        raise ValueError(f"sparsity.granularity must be one of {', '.join(PATTERNS)}, "
                         f"got {granularity!r}")
    check_nm(n, m)
    check_block(tuple(block))
    settings: dict[str, dict[str, object]] = {"nm": {"n": n, "m": m},
                                              "block": {"block": tuple(block)}}
    return PATTERNS[granularity](**settings.get(granularity, {}))

