"""An analytic sparse *training* accelerator: a systolic PE array, an on-chip buffer and DRAM.

Timing of one dense GEMM C[m×n] = A[m×k]·B[k×n] on an R×C array (Samajdar et al., "A Systematic
Methodology for Characterizing Scalability of DNN Accelerators using SCALE-Sim", ISPASS 2020,
whose v3 simulator we cross-check in benchmarks/bench_cost_scalesim.py):

- weight stationary (ws): k on rows, n on columns, m streamed. Each of ⌈k/R⌉·⌈n/C⌉ folds costs
  R (load the weights) + m + R + C − 2 (stream with skew, drain).
- output stationary (os): m on rows, n on columns, k streamed. Each of ⌈m/R⌉·⌈n/C⌉ folds costs
  k + R + C − 2 (the previous fold drains while the next fills).

What each phase can skip (`skip_lengths`), per granularity, when `sparse_skip` is on. The array
processes output columns in groups of C; inside a group the columns advance in lock-step, so a
group takes as long as its *longest* column (the load-imbalance model: `load_imbalance`):

- unstructured: per-element zero skipping with index metadata; forward and dgrad compress their
  reduction to the column's kept weights (forward column = output channel, dgrad column = input
  position), columns with nothing kept are dropped.
- block: kept blocks are processed whole, pruned blocks skipped as whole tiles, in forward and
  dgrad alike (block structure is symmetric); same counting, lengths are multiples of the block.
- nm: an N:M engine runs a phase compressed (n of every m along the reduction) only when *every*
  group along that phase's reduction complies: forward needs N:M along C_in, dgrad along C_out
  (a transposable mask). Otherwise the phase runs dense.
- channel: pruned filters are dropped: forward and wgrad lose columns, dgrad loses reduction.
- wgrad (all granularities): only the kept weights' gradients are computed (rows of the wgrad
  GEMM are compressed per output channel) unless the algorithm needs dense gradients.

Memory: per phase, the resident operand (weights, or the weight gradient in wgrad) is tiled into
half the buffer; the streamed activations are read once per tile (`dram_bytes`). Cycles are the
roofline max(compute cycles, DRAM bytes / bytes per cycle). Energy is a proxy: executed MACs,
buffer bytes and DRAM bytes times per-unit energies (Horowitz, "Computing's energy problem",
ISSCC 2014, 45 nm).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from synccp.cost.flops import kept_weights, sparse_macs
from synccp.cost.gemms import Gemm, Layer, phase_gemm
from synccp.cost.structure import LayerSparsity

GRANULARITIES = ("unstructured", "nm", "block", "channel")


@dataclass(frozen=True)
class Accelerator:
    """A parametrised training accelerator; defaults describe an edge training chip.

    Sources of the defaults: 32×32 array and ws dataflow are SCALE-Sim's default configuration;
    1 GHz clock; 1 MiB on-chip buffer; 25.6 GB/s DRAM = one 64-bit LPDDR4-3200 channel (JEDEC
    JESD209-4); bf16 operands (2 bytes); energies from Horowitz (ISSCC 2014, 45 nm): fp16 multiply
    1.1 pJ + add 0.4 pJ = 1.5 pJ per MAC, a 1 MB SRAM read of 64 bits ≈ 100 pJ (12.5 pJ/byte),
    a DRAM access of 64 bits ≈ 1.3 nJ (≈ 160 pJ/byte). `sparse_skip=False` models a plain dense
    array (no cycles saved by any mask). `vector_lanes` element ops/cycle serve the element-wise
    work (mask updates, EMA); 0 means `cols`.
    """

    rows: int = 32
    cols: int = 32
    dataflow: str = "ws"
    clock_hz: float = 1.0e9
    buffer_bytes: int = 1 << 20
    dram_bytes_per_s: float = 25.6e9
    bytes_per_element: int = 2
    mac_pj: float = 1.5
    sram_pj_per_byte: float = 12.5
    dram_pj_per_byte: float = 160.0
    sparse_skip: bool = True
    vector_lanes: int = 0

    def __post_init__(self) -> None:
        if self.dataflow not in ("ws", "os"):
            raise ValueError(f"accelerator dataflow must be 'ws' or 'os', got {self.dataflow!r}")
        for key in ("rows", "cols", "clock_hz", "buffer_bytes", "dram_bytes_per_s",
                    "bytes_per_element"):
            if not getattr(self, key) > 0:
                raise ValueError(f"accelerator {key} must be > 0, got {getattr(self, key)!r}")

    @property
    def dram_bytes_per_cycle(self) -> float:
        return self.dram_bytes_per_s / self.clock_hz

    @property
    def lanes(self) -> int:
        return self.vector_lanes or self.cols

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULT_ACCELERATOR = Accelerator()


@dataclass(frozen=True)
class PhaseCost:
    """Cost of one layer in one phase of one pass, for one step."""

    macs: int  # useful MACs (mask-exact)
    slots: float  # MACs the array executes (useful + structural padding, e.g. N:M slots)
    compute_cycles: float
    memory_cycles: float
    dram_bytes: float
    sram_bytes: float
    energy_pj: float
    imbalance: float
    rule: str

    @property
    def cycles(self) -> float:
        return max(self.compute_cycles, self.memory_cycles)

    @property
    def bound(self) -> str:
        return "memory" if self.memory_cycles > self.compute_cycles else "compute"


def column_groups(lengths: Tensor | None, n_cols: int, full: float, cols: int) -> Tensor:
    """Effective length of each group of `cols` columns: the longest column in the group.

    `lengths` (n_cols,) per-column lengths along the compressed dimension, None = all `full`.
    Empty columns are dropped before grouping. Returns (groups,) float64.
    """
    if lengths is None:
        return torch.full((math.ceil(n_cols / cols),), float(full), dtype=torch.float64)
    kept = lengths[lengths > 0].to(torch.float64)
    kept = torch.nn.functional.pad(kept, (0, (-len(kept)) % cols))
    return kept.view(-1, cols).amax(1) if len(kept) else kept


def load_imbalance(lengths: Tensor, cols: int) -> float:
    """Σ_groups max / Σ_groups mean of the column lengths: 1 = balanced, > 1 = the slowest column
    of a group idles the others (computed from the actual mask's per-column counts)."""
    kept = lengths[lengths > 0].to(torch.float64)
    if not len(kept):
        return 1.0
    pad = (-len(kept)) % cols
    groups = torch.nn.functional.pad(kept, (0, pad)).view(-1, cols)
    sizes = torch.full((len(groups),), float(cols), dtype=torch.float64)
    sizes[-1] = cols - pad
    return float(groups.amax(1).sum() / (groups.sum(1) / sizes).sum())


def compute_cycles(gemm: Gemm, groups: Tensor, compressed: str, accel: Accelerator) -> float:
    """Array cycles of `gemm` whose column groups have effective lengths `groups` along the
    `compressed` dimension ("k": reduction, "m": streamed rows); module docstring formulas."""
    rows, cols = accel.rows, accel.cols
    k = groups if compressed == "k" else torch.tensor(float(gemm.k), dtype=torch.float64)
    m = groups if compressed == "m" else torch.tensor(float(gemm.m), dtype=torch.float64)
    if accel.dataflow == "ws":
        cycles = torch.ceil(k / rows) * (2 * rows + cols + m - 2)
    else:
        cycles = torch.ceil(m / rows) * (k + rows + cols - 2)
    return float((cycles * torch.ones_like(groups)).sum())


def sram_bytes(gemm: Gemm, groups: Tensor, compressed: str, accel: Accelerator) -> float:
    """Buffer traffic: per fold, ws loads R·C weights, streams m·R inputs, reads+writes m·C
    partial sums; os reads R·k + k·C operands and writes R·C outputs."""
    rows, cols = accel.rows, accel.cols
    k = groups if compressed == "k" else torch.tensor(float(gemm.k), dtype=torch.float64)
    m = groups if compressed == "m" else torch.tensor(float(gemm.m), dtype=torch.float64)
    if accel.dataflow == "ws":
        elems = torch.ceil(k / rows) * (rows * cols + m * rows + 2 * m * cols)
    else:
        elems = torch.ceil(m / rows) * (rows * k + k * cols + rows * cols)
    return float((elems * torch.ones_like(groups)).sum()) * accel.bytes_per_element


def dram_bytes(*, resident: float, resident_read: bool, streamed: float, written: float,
               accel: Accelerator) -> float:
    """Blocked-GEMM DRAM traffic: the resident operand in tiles of half the buffer, the streamed
    operands re-read once per tile, outputs written once. Arguments in elements."""
    size = accel.bytes_per_element
    tiles = max(1, math.ceil(resident * size / (accel.buffer_bytes / 2)))
    return size * ((resident if resident_read else 0.0) + streamed * tiles + written)


def nm_length(positions: int, per_position: int, *, n: int, m: int) -> float:
    """Compressed reduction of an N:M engine: n slots per (possibly short) group of m."""
    return float(positions * math.ceil(per_position / m) * n)


def skip_lengths(layer: Layer, phase: str, sparsity: LayerSparsity | None, *, granularity: str,
                 n: int, m: int, dense_gradients: bool,
                 accel: Accelerator) -> tuple[Tensor | None, str, str]:
    """(per-column lengths or None = dense, compressed dimension "k"/"m", rule applied)."""
    compressed = "m" if phase == "wgrad" else "k"
    if sparsity is None or sparsity.density >= 1.0 or not accel.sparse_skip:
        return None, compressed, "dense"
    if granularity not in GRANULARITIES:
        raise ValueError(f"sparsity.granularity must be one of {', '.join(GRANULARITIES)}, "
                         f"got {granularity!r}")
    if phase == "wgrad":
        if dense_gradients:
            return None, compressed, "dense gradient (update step)"
        return sparsity.out_counts, compressed, "kept gradients only"
    if granularity == "nm":
        complies = sparsity.nm_forward if phase == "forward" else sparsity.nm_dgrad
        if not complies:
            return None, compressed, f"dense: mask not {n}:{m} along this reduction"
        positions = layer.reduction // layer.weight_shape[1]  # kh·kw
        length = (nm_length(positions, layer.weight_shape[1], n=n, m=m) if phase == "forward"
                  else nm_length(1, layer.out_features, n=n, m=m))
        columns = layer.out_features if phase == "forward" else layer.reduction
        return torch.full((columns,), length,
                          dtype=torch.float64), compressed, f"{n}:{m} compressed"
    counts = sparsity.out_counts if phase == "forward" else sparsity.in_counts
    rule = {"unstructured": "zero skip", "block": "block skip", "channel": "channel shrink"}
    return counts, compressed, rule[granularity]


def phase_dram_bytes(layer: Layer, phase: str, batch: int, *, weights: float,
                     accel: Accelerator) -> float:
    """DRAM bytes of one phase; `weights` = stored (or computed, in wgrad) weight elements."""
    act_in, act_out = batch * layer.in_elems, batch * layer.out_elems
    if phase == "forward":
        return dram_bytes(resident=weights, resident_read=True, streamed=act_in, written=act_out,
                          accel=accel)
    if phase == "dgrad":
        return dram_bytes(resident=weights, resident_read=True, streamed=act_out, written=act_in,
                          accel=accel)
    return dram_bytes(resident=weights, resident_read=False, streamed=act_in + act_out,
                      written=weights, accel=accel)


def phase_cost(layer: Layer, phase: str, batch: int, sparsity: LayerSparsity | None, *,
               granularity: str, n: int, m: int, dense_gradients: bool,
               accel: Accelerator) -> PhaseCost:
    """Cycles, traffic and energy of `layer` in `phase` for a step at `sparsity` (None = dense)."""
    gemm = phase_gemm(layer, phase, batch)
    lengths, compressed, rule = skip_lengths(layer, phase, sparsity, granularity=granularity, n=n,
                                             m=m, dense_gradients=dense_gradients, accel=accel)
    full, other = (gemm.k, gemm.m) if compressed == "k" else (gemm.m, gemm.k)
    groups = column_groups(lengths, gemm.n, full, accel.cols)  # (groups,)
    density = 1.0 if sparsity is None else sparsity.density
    weights = layer.numel if lengths is None else kept_weights(layer, density)
    traffic = phase_dram_bytes(layer, phase, batch, weights=weights, accel=accel)
    sram = sram_bytes(gemm, groups, compressed, accel)
    slots = float(other) * (gemm.n * full if lengths is None else float(lengths.sum()))
    return PhaseCost(
        macs=sparse_macs(layer, phase, batch, density, dense_gradients=dense_gradients),
        slots=slots, compute_cycles=compute_cycles(gemm, groups, compressed, accel),
        memory_cycles=traffic / accel.dram_bytes_per_cycle, dram_bytes=traffic, sram_bytes=sram,
        energy_pj=(accel.mac_pj * slots + accel.sram_pj_per_byte * sram
                   + accel.dram_pj_per_byte * traffic),
        imbalance=1.0 if lengths is None else load_imbalance(lengths, accel.cols), rule=rule)


def elementwise_cost(ops: float, traffic_bytes: float, accel: Accelerator) -> dict:
    """Roofline cost of element-wise work (mask updates, score / target EMA)."""
    cycles = max(ops / accel.lanes, traffic_bytes / accel.dram_bytes_per_cycle)
    return {"ops": ops, "dram_bytes": traffic_bytes, "cycles": cycles,
            "energy_pj": accel.mac_pj * ops + accel.dram_pj_per_byte * traffic_bytes}
