"""Accelerator model: skip rules per granularity, transposability, load imbalance, roofline."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from synccp.cost import structure
from synccp.cost.accelerator import (
    Accelerator,
    column_groups,
    compute_cycles,
    load_imbalance,
    phase_cost,
)
from synccp.cost.gemms import Gemm, trace_layers

ACCEL = Accelerator(rows=4, cols=4)


def _conv(c_out=8, c_in=8, size=4):
    (layer,) = trace_layers(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), (1, c_in, size, size),
                            mark_first=False)
    return layer


def _cost(layer, phase, mask, granularity, accel=ACCEL, dense_gradients=False, batch=2):
    state = structure.from_mask(mask, n=2, m=4)
    return phase_cost(layer, phase, batch, state, granularity=granularity, n=2, m=4,
                      dense_gradients=dense_gradients, accel=accel)


def _transposable_24(c_out, c_in):
    o, i = torch.meshgrid(torch.arange(c_out), torch.arange(c_in), indexing="ij")
    return ((o + i) % 2 == 0)[:, :, None, None].expand(c_out, c_in, 3, 3)


def _plain_24(c_out, c_in):
    return (torch.arange(c_in) % 4 < 2)[None, :, None, None].expand(c_out, c_in, 3, 3)


def test_transposability_detected_on_constructed_masks():
    assert structure.is_transposable(_transposable_24(8, 8), n=2, m=4)
    assert not structure.is_transposable(_plain_24(8, 8), n=2, m=4)  # 4 of 4 kept along C_out
    state = structure.from_mask(_plain_24(8, 8), n=2, m=4)
    assert state.nm_forward and not state.nm_dgrad and not state.transposable


def test_nm_halves_forward_and_skips_dgrad_only_when_transposable():
    layer, dense = _conv(), structure.dense((8, 8, 3, 3))
    dense_fwd = phase_cost(layer, "forward", 2, None, granularity="nm", n=2, m=4,
                           dense_gradients=False, accel=ACCEL)
    for mask in (_transposable_24(8, 8), _plain_24(8, 8)):
        forward = _cost(layer, "forward", mask, "nm")
        assert forward.macs * 2 == dense_fwd.macs and forward.slots * 2 == dense_fwd.slots
        assert forward.compute_cycles < dense_fwd.compute_cycles
    assert _cost(layer, "dgrad", _transposable_24(8, 8), "nm").rule == "2:4 compressed"
    plain = _cost(layer, "dgrad", _plain_24(8, 8), "nm")
    assert plain.rule.startswith("dense") and plain.slots == 2 * 16 * 72 * 8
    assert dense.density == 1.0


def test_load_imbalance_is_one_when_balanced_and_above_one_when_skewed():
    assert load_imbalance(torch.full((8,), 5.0), 4) == 1.0
    skewed = torch.tensor([10.0, 1, 1, 1, 10, 1, 1, 1])
    assert load_imbalance(skewed, 4) == pytest.approx(20 / (2 * 13 / 4))
    layer = _conv(c_out=8, c_in=8)
    balanced = torch.zeros(8, 8, 3, 3, dtype=torch.bool)
    balanced[:, :4] = True  # every output channel keeps 36 of 72
    skew = torch.zeros(8, 8, 3, 3, dtype=torch.bool)
    skew[0::4] = True  # channels 0 and 4 keep all 72 weights
    skew[:, 0, 0, 0] = True  # every other channel keeps 1
    assert _cost(layer, "forward", balanced, "unstructured").imbalance == 1.0
    assert _cost(layer, "forward", skew, "unstructured").imbalance > 1.0


def test_block_skips_tiles_in_forward_and_dgrad_and_channel_shrinks_the_gemm():
    layer = _conv(c_out=8, c_in=8)
    block = torch.zeros(8, 8, 3, 3, dtype=torch.bool)
    block[:4, :4] = True
    block[4:, 4:] = True
    dense_fwd = phase_cost(layer, "forward", 2, None, granularity="block", n=2, m=4,
                           dense_gradients=False, accel=ACCEL)
    for phase in ("forward", "dgrad"):
        cost = _cost(layer, phase, block, "block")
        assert cost.rule == "block skip" and cost.compute_cycles < dense_fwd.compute_cycles
    channel = torch.zeros(8, 8, 3, 3, dtype=torch.bool)
    channel[:4] = True  # half the filters
    half = trace_layers(nn.Conv2d(8, 4, 3, padding=1, bias=False), (1, 8, 4, 4), mark_first=False)[
        0
    ]
    for phase in ("forward", "wgrad"):
        shrunk = phase_cost(
            half,
            phase,
            2,
            None,
            granularity="channel",
            n=2,
            m=4,
            dense_gradients=False,
            accel=ACCEL,
        )
        assert _cost(layer, phase, channel, "channel").compute_cycles == shrunk.compute_cycles


def test_wgrad_dense_when_the_algorithm_needs_dense_gradients():
    layer, mask = _conv(), _transposable_24(8, 8)
    sparse = _cost(layer, "wgrad", mask, "unstructured")
    dense = _cost(layer, "wgrad", mask, "unstructured", dense_gradients=True)
    assert dense.macs == 2 * sparse.macs and dense.compute_cycles > sparse.compute_cycles


def test_dense_cycles_follow_the_systolic_formulas():
    gemm = Gemm(100, 70, 90)
    ws, os_ = Accelerator(rows=32, cols=32), Accelerator(rows=32, cols=32, dataflow="os")
    groups = column_groups(None, gemm.n, gemm.k, 32)
    assert compute_cycles(gemm, groups, "k", ws) == 3 * 3 * (2 * 32 + 32 + 100 - 2)
    groups = column_groups(None, gemm.n, gemm.k, 32)
    assert compute_cycles(gemm, groups, "k", os_) == 4 * 3 * (90 + 32 + 32 - 2)


def test_roofline_switches_regime():
    big = _conv(c_out=64, c_in=64, size=8)
    def forward(accel):
        return phase_cost(big, "forward", 4, None, granularity="unstructured", n=2, m=4,
                          dense_gradients=False, accel=accel)

    compute = forward(Accelerator())
    assert compute.bound == "compute" and compute.cycles == compute.compute_cycles
    starved = Accelerator(dram_bytes_per_s=1e6)
    memory = forward(starved)
    assert memory.bound == "memory" and memory.cycles == memory.memory_cycles > compute.cycles


def test_interpolated_profile_keeps_totals_and_end_points():
    mask = torch.rand(8, 8, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.25
    final = structure.from_mask(mask, n=2, m=4)
    half = structure.interpolate(final, 0.6)
    assert float(half.out_counts.sum()) == pytest.approx(0.6 * mask.numel())
    assert float(half.in_counts.sum()) == pytest.approx(0.6 * mask.numel())
    assert structure.interpolate(final, final.density) is final
    assert bool((structure.interpolate(final, 1.0).out_counts == 72).all())


def test_accelerator_rejects_bad_parameters():
    with pytest.raises(ValueError, match="dataflow"):
        Accelerator(dataflow="rs")
    with pytest.raises(ValueError, match="rows"):
        Accelerator(rows=0)
