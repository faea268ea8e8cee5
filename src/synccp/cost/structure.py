"""What a mask looks like to a GEMM engine: per-column kept counts, N:M compliance, transposability.

A weight mask (C_out, C_in, kh, kw) (or (out, in)) is read in the channels-last GEMM order of
DESIGN.md §1: rows are output channels, the reduction runs over (kh, kw, C_in) with C_in fastest.
The cost model only needs, per layer and branch, a `LayerSparsity`:

- `out_counts` (C_out,): kept weights per output channel — the column lengths of the forward
  GEMM along its reduction, and of the wgrad GEMM along its rows (only kept gradients computed).
- `in_counts` (kh·kw·C_in,): kept weights per reduction position — the column lengths of the
  dgrad GEMM, whose reduction runs over C_out.
- `nm_forward` / `nm_dgrad`: every group of m consecutive weights along the forward reduction
  (C_in) / along the dgrad reduction (C_out) holds at most n kept weights. Both together are the
  *transposable* N:M mask of Hubara et al., "Accelerated Sparse Neural Training: A Provable and
  Efficient Method to Find N:M Transposable Masks", NeurIPS 2021.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class LayerSparsity:
    """The mask statistics of one layer in one branch (module docstring)."""

    density: float
    out_counts: Tensor  # (C_out,) float64
    in_counts: Tensor  # (kh·kw·C_in,) float64
    nm_forward: bool
    nm_dgrad: bool

    @property
    def transposable(self) -> bool:
        return self.nm_forward and self.nm_dgrad


def channels_last(mask: Tensor) -> Tensor:
    """(C_out, C_in, kh, kw) or (out, in) → (C_out, kh, kw, C_in)."""
    if mask.dim() == 2:
        return mask[:, None, None, :]
    if mask.dim() != 4:
        raise ValueError(f"mask must be 2-D (linear) or 4-D (conv), got shape {tuple(mask.shape)}")
    return mask.permute(0, 2, 3, 1)


def nm_along_last(mask: Tensor, *, n: int, m: int) -> bool:
    """True when every group of `m` consecutive entries along the last dim has ≤ `n` kept.

    A last dim that is not a multiple of `m` gets a short last group (padded with pruned entries).
    """
    pad = (-mask.shape[-1]) % m
    padded = torch.nn.functional.pad(mask.to(torch.int32), (0, pad))
    groups = padded.reshape(*padded.shape[:-1], -1, m).sum(-1)  # (..., ceil(C/m))
    return bool((groups <= n).all())


def is_transposable(mask: Tensor, *, n: int, m: int) -> bool:
    """N:M along C_in (forward) and along C_out (dgrad) at every kernel position."""
    cl = channels_last(mask.bool())  # (C_out, kh, kw, C_in)
    return nm_along_last(cl, n=n, m=m) and nm_along_last(cl.permute(3, 1, 2, 0), n=n, m=m)


def from_mask(mask: Tensor, *, n: int, m: int) -> LayerSparsity:
    """Exact statistics of a boolean mask (shape of the weight)."""
    cl = channels_last(mask.bool())  # (C_out, kh, kw, C_in)
    flat = cl.reshape(cl.shape[0], -1)  # (C_out, kh·kw·C_in)
    return LayerSparsity(
        density=float(flat.float().mean()),
        out_counts=flat.sum(1, dtype=torch.float64),
        in_counts=flat.sum(0, dtype=torch.float64),
        nm_forward=nm_along_last(cl, n=n, m=m),
        nm_dgrad=nm_along_last(cl.permute(3, 1, 2, 0), n=n, m=m))


def dense(shape: tuple[int, ...]) -> LayerSparsity:
    rows, cols = shape[0], math.prod(shape[1:])
    return LayerSparsity(1.0, torch.full((rows,), float(cols), dtype=torch.float64),
                         torch.full((cols,), float(rows), dtype=torch.float64), False, False)


def interpolate(final: LayerSparsity, density: float) -> LayerSparsity:
    """The statistics at `density` ≥ final density of a mask that prunes toward `final`.

    Magnitude pruning without regrowth gives nested masks (every earlier mask contains the final
    one), so each column's count lies between the final count and the full length. The model
    spreads the extra kept weights in proportion to what each column will lose:
    count(d) = full − (full − count_final)·(1 − d)/(1 − d_final). Totals are exact (d·numel);
    d = 1 gives the dense profile and d = d_final the final one. N:M compliance holds only at the
    final density (during the ramp some groups are still dense).
    """
    if density >= 1.0:
        return dense((len(final.out_counts), len(final.in_counts)))
    if final.density >= 1.0 or abs(density - final.density) < 1e-12:
        return final
    share = (1.0 - density) / (1.0 - final.density)
    rows, cols = len(final.out_counts), len(final.in_counts)
    at_final = density <= final.density + 1e-9
    return LayerSparsity(
        density, cols - (cols - final.out_counts) * share, rows - (rows - final.in_counts) * share,
        final.nm_forward and at_final, final.nm_dgrad and at_final)


def from_density(shape: tuple[int, ...], density: float, *, granularity: str, n: int, m: int,
                 block: tuple[int, int], generator: torch.Generator,
                 sampler: RandomMask | None = None) -> LayerSparsity:
    """Statistics of a random mask of `density` when no real mask exists (cost before training).

    unstructured: each weight kept independently (binomial column counts); block: each
    (block_out × block_in) block kept independently; channel: the first round(d·C_out) filters;
    nm: exact n/m counts, N:M along C_in once the density reaches n/m, not assumed transposable.
    A `sampler` (a `RandomMask` of this layer) is reused across densities instead of a new draw.
    """
    if density >= 1.0:
        return dense(shape)
    rows, cols = shape[0], math.prod(shape[1:])
    if granularity == "channel":
        kept = torch.zeros(rows, dtype=torch.float64)
        kept[:round(density * rows)] = 1.0
        return LayerSparsity(density, kept * cols, torch.full((cols,), kept.sum().item(),
                                                             dtype=torch.float64), False, False)
    if granularity == "nm":
        at_nm = density <= n / m + 1e-9
        return LayerSparsity(density, torch.full((rows,), density * cols, dtype=torch.float64),
                             torch.full((cols,), density * rows, dtype=torch.float64), at_nm, False)
    b_out, b_in = block if granularity == "block" else (1, 1)
    # (the same draw for every density)
    sampler = sampler or RandomMask(shape, (b_out, b_in), generator)
    row_counts, col_counts = sampler.counts(density)
    return LayerSparsity(density, row_counts, col_counts, False, False)


class RandomMask:
    """One uniform draw u per (block of a) layer, kept sorted by row and by column, so the kept
    counts of the random mask {u < d} come out for any density d by binary search: the cost model
    evaluates a layer at every density of the ramp without drawing (or summing) a new mask each
    time. Each density's mask is Bernoulli(d) per unit, as an independent draw would be."""

    def __init__(self, shape: tuple[int, ...], block: tuple[int, int], generator: torch.Generator):
        rows, cols = shape[0], math.prod(shape[1:])
        assert rows % block[0] == 0 and cols % block[1] == 0, (
            "only fitting layers are pruned by blocks"
        )
        self.rows, self.cols, self.block = rows, cols, block
        u = torch.rand(
            (math.ceil(rows / block[0]), math.ceil(cols / block[1])), generator=generator
        )
        self._by_row = u.sort(dim=1).values  # (R_blocks, C_blocks)
        self._by_col = u.t().sort(dim=1).values.contiguous()  # (C_blocks, R_blocks)

    def counts(self, density: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Kept weights per row and per column of the (C_out, rest) matrix at `density`."""
        b_out, b_in = self.block

        def below(sorted_rows: torch.Tensor) -> torch.Tensor:  # per row: how many u < density
            target = torch.full((len(sorted_rows), 1), density, dtype=sorted_rows.dtype)
            return torch.searchsorted(sorted_rows, target).squeeze(1)

        row_blocks, col_blocks = below(self._by_row), below(self._by_col)
        rows = (row_blocks.to(torch.float64) * b_in).repeat_interleave(b_out)[: self.rows]
        cols = (col_blocks.to(torch.float64) * b_out).repeat_interleave(b_in)[: self.cols]
        return rows, cols
