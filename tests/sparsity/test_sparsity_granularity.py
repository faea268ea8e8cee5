"""Granularities: exact small examples, layout of N:M groups, unfit layers, property tests.

Masks come from the path training uses: a pattern row of `PATTERNS` through `allocate_masks`
(one layer, so the allocation is the layer's own budget)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from synccp.sparsity.allocation import allocate_masks
from synccp.sparsity.granularity import (
    GRANULARITIES,
    NM,
    PATTERNS,
    Block,
    Channel,
    Pattern,
    Unstructured,
    pattern_for,
)
from synccp.sparsity.pattern_report import pattern_report, pattern_summary
from synccp.sparsity.sparsifier import Sparsifier
from synccp.sparsity.spec import SparsitySpec
from synccp.sparsity.topk import keep_top, kth_largest


def _mask(scores, density, pattern: Pattern):
    """One layer's mask at `density` through the allocation the Sparsifier uses."""
    return allocate_masks({"w": scores}, density, allocation="uniform", pattern=pattern)["w"]


def unstructured_mask(scores, density):
    return _mask(scores, density, Unstructured())


def nm_mask(scores, density, *, n, m):
    return _mask(scores, density, NM(n=n, m=m))


def block_mask(scores, density, *, block):
    return _mask(scores, density, Block(block=block))


def channel_mask(scores, density):
    return _mask(scores, density, Channel())


def test_keep_top_is_exact_with_ties():
    scores = torch.tensor([0.0, 1.0, 1.0, 1.0, 2.0, 0.0])
    mask = keep_top(scores, 3)
    assert mask.tolist() == [False, True, True, False, True, False]  # ties: first ones kept
    assert keep_top(scores, 0).sum() == 0 and keep_top(scores, 9).all()


def _reference_kth_largest(flat, count):
    return flat.sort(descending=True).values[count - 1]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.integers(0, 5).map(float), st.floats(0, 1, width=32),
                                 st.sampled_from([math.inf, -math.inf])), min_size=1, max_size=300),
       fraction=st.floats(0.0, 1.0), sample=st.integers(1, 64))
def test_kth_largest_bracket_path_is_exact(values, fraction, sample):
    """The sampled bracket (forced on small inputs with direct=0) equals a full sort: heavy ties,
    ±inf masses (the lifted scores of shrink-only and nested selections), any sample size."""
    flat = torch.tensor(values, dtype=torch.float32)
    count = min(len(values), max(1, round(fraction * len(values))))
    got = kth_largest(flat, count, direct=0, sample=sample)
    assert got.item() == _reference_kth_largest(flat, count).item()


@pytest.mark.parametrize("kind", ["uniform", "ties", "lifted"])
def test_kth_largest_on_millions_matches_kthvalue(kind):
    """The default sizes (bracket from a 65k sample) on 2 M scores, where the bracket path runs."""
    g = torch.Generator().manual_seed(0)
    flat = torch.rand(2_000_000, generator=g)
    if kind == "ties":
        flat = (flat * 7).floor()
    if kind == "lifted":  # shrink-only selection: −inf outside the allowed set, +inf where forced
        flat = torch.where(torch.rand(flat.shape, generator=g) < 0.6, flat, -math.inf)
        flat = torch.where(torch.rand(flat.shape, generator=g) < 0.05, math.inf, flat)
    for count in (1, 1000, 200_000, 1_000_000, 1_999_999):
        assert (kth_largest(flat, count).item()
                == flat.kthvalue(flat.numel() - count + 1).values.item())
    kept = keep_top(flat, 200_000)
    assert int(kept.sum()) == 200_000 and flat[kept].min() >= flat[~kept].max()


def test_unstructured_keeps_largest():
    scores = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.7]])
    assert unstructured_mask(scores, 0.5).tolist() == [[False, True, False], [True, False, True]]


def test_nm_groups_run_along_input_channels_channels_last():
    # conv weight (C_out=1, C_in=4, kh=1, kw=2): groups are the 4 input channels at each (kh, kw)
    scores = torch.zeros(1, 4, 1, 2)
    scores[0, :, 0, 0] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # group at kw=0
    scores[0, :, 0, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # group at kw=1
    mask = nm_mask(scores, 0.5, n=2, m=4)
    assert mask[0, :, 0, 0].tolist() == [True, True, False, False]
    assert mask[0, :, 0, 1].tolist() == [False, False, True, True]


def test_nm_linear_groups_along_in_features():
    scores = torch.tensor([[1.0, 5.0, 2.0, 6.0, 9.0, 8.0, 0.0, 7.0]])
    assert nm_mask(scores, 0.5, n=2, m=4).tolist() == [[False, True, False, True,
                                                        True, True, False, False]]


def test_nm_ramp_makes_lowest_l1_groups_sparse_first():
    # four groups of 4 with L1 = 4, 40, 8, 80; density 0.75 → f = (1 − 0.75)/(1 − 0.5) = 0.5
    scores = torch.tensor([[1.0] * 4 + [10.0] * 4 + [2.0] * 4 + [20.0] * 4])
    mask = nm_mask(scores, 0.75, n=2, m=4).reshape(4, 4)
    assert mask.sum(1).tolist() == [2, 4, 2, 4]
    assert nm_mask(scores, 1.0, n=2, m=4).all()
    assert (nm_mask(scores, 0.5, n=2, m=4).reshape(4, 4).sum(1) == 2).all()


def test_nm_never_goes_below_n_over_m():
    """N:M cannot express less than N/M: a lower request keeps exactly N per group, and a run
    asking for it ends at n/m (the spec's schedule)."""
    mask = nm_mask(torch.rand(4, 8), 0.3, n=2, m=4)
    assert (mask.reshape(-1, 4).sum(1) == 2).all()
    spec = SparsitySpec(algorithm="gmp", granularity="nm", density=0.3, total_steps=100)
    assert spec.densities(100) == (0.5, 0.5)
    assert NM(n=2, m=4).final_density(0.3) == 0.5 and Unstructured().final_density(0.3) == 0.3


def test_block_mask_keeps_whole_tiles_by_l1():
    scores = torch.zeros(4, 4, 1, 1)
    scores[:2, 2:] = 5.0  # tile (0, 1)
    scores[2:, :2] = 1.0  # tile (1, 0)
    mask = block_mask(scores, 0.25, block=(2, 2))
    expected = torch.zeros(4, 4, 1, 1, dtype=torch.bool)
    expected[:2, 2:] = True
    assert torch.equal(mask, expected)
    assert block_mask(scores, 0.5, block=(2, 2)).sum() == 8


def test_block_tiles_are_per_kernel_position():
    scores = torch.zeros(2, 2, 1, 2)
    scores[:, :, 0, 1] = 1.0
    mask = block_mask(scores, 0.5, block=(2, 2))
    assert mask[:, :, 0, 1].all() and not mask[:, :, 0, 0].any()


def test_channel_mask_keeps_filters_by_mean_l1():
    scores = torch.tensor([[1.0, 1.0], [5.0, 0.0], [0.1, 0.1], [3.0, 3.0]])
    assert channel_mask(scores, 0.5).all(1).tolist() == [False, True, False, True]


def test_unfit_layers_are_reported_and_left_dense():
    nm = pattern_for("nm", n=2, m=4)
    assert "C_in=6" in nm.unfit_reason((8, 6, 3, 3))
    assert nm.fits((8, 8, 3, 3)) and nm.fits((16, 8))
    block = pattern_for("block", block=(4, 4))
    assert "C_out, C_in" in block.unfit_reason((6, 8, 1, 1))
    assert pattern_for("channel").fits((8, 6)) and pattern_for("unstructured").fits((5, 3))
    weights = {"fit": torch.rand(8, 8, 3, 3), "unfit": torch.rand(8, 6, 3, 3)}
    sparsifier = Sparsifier(weights, algorithm="gmp", granularity="nm", total_steps=10,
                            hooks=False)
    summary = sparsifier.summary()
    assert [u["name"] for u in summary["unfit_layers"]] == ["unfit"]
    assert "C_in=6" in summary["unfit_layers"][0]["reason"]
    assert sparsifier.masks()["online/unfit"].all() and (weights["unfit"] != 0).all()


def test_pattern_errors_name_the_field():
    with pytest.raises(ValueError, match="sparsity.n.*n=4, m=4"):
        pattern_for("nm", n=4, m=4)
    with pytest.raises(ValueError, match="sparsity.n.*n=4, m=4"):
        NM(n=4, m=4)
    with pytest.raises(ValueError, match="sparsity.block_out/block_in.*block=\\(0, 4\\)"):
        Block(block=(0, 4))
    with pytest.raises(ValueError, match="sparsity.granularity.*'rows'"):
        pattern_for("rows")


def test_registry_rows_describe_themselves():
    assert GRANULARITIES == tuple(PATTERNS) == ("unstructured", "nm", "block", "channel")
    assert all(PATTERNS[name].granularity == name for name in PATTERNS)
    described = [pattern_for(name, n=2, m=4, block=(4, 2)).describe() for name in GRANULARITIES]
    assert described == ["element", "2:4", "4x2 block", "channel"]
    assert pattern_for("nm").keys == "sparsity.n/sparsity.m"
    assert NM(n=1, m=4).notes(allocation="global", density=0.1) == [
        "N:M uses uniform per-layer group fractions; sparsity.allocation='global' is ignored",
        "N:M final density is n/m = 1/4; sparsity.density=0.1 is ignored"]
    assert Block().notes(allocation="global", density=0.1) == []


def test_pattern_report_and_summary():
    nm = pattern_for("nm", n=2, m=4)
    good = nm_mask(torch.rand(8, 8, 3, 3), 0.5, n=2, m=4)
    hybrid = nm_mask(torch.rand(8, 8, 3, 3), 0.75, n=2, m=4)
    bad = torch.ones(8, 8, 3, 3, dtype=torch.bool)
    bad[0, 0, 0, 0] = False  # a group with 3 of 4
    reports = [pattern_report("a", good, nm), pattern_report("b", hybrid, nm),
               pattern_report("c", bad, nm),
               pattern_report("d", torch.ones(8, 6, dtype=torch.bool), nm)]
    assert reports[0]["valid"] and reports[0]["violations"] == 0
    assert not reports[1]["valid"] and reports[1]["hybrid_valid"]
    assert not reports[2]["hybrid_valid"] and reports[2]["violations"] == 8 * 8 * 9 // 4
    assert not reports[3]["fits"] and reports[3]["valid"]
    assert pattern_summary(reports) == "2:4 valid in 1/3 layers (1 unfit layer left dense)"
    block = pattern_for("block", block=(2, 2))
    assert pattern_report("e", block_mask(torch.rand(4, 4, 3, 3), 0.5, block=(2, 2)),
                          block)["valid"]
    assert not pattern_report("f", unstructured_mask(torch.rand(4, 4, 3, 3), 0.5), block)["valid"]
    by_name = pattern_report("g", good, "nm", n=2, m=4)
    assert by_name["valid"] and by_name["pattern"] == "2:4"


# ----------------------------------------------------------------------------- property tests
def _shapes(multiple: int):
    dim = st.integers(1, 4).map(lambda k: k * multiple)
    conv = st.tuples(dim, dim, st.sampled_from([1, 3]), st.sampled_from([1, 3]))
    linear = st.tuples(dim, dim)
    return st.one_of(conv, linear)


def _scores(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40, deadline=None)
@given(shape=_shapes(1), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_unstructured_property(shape, density, seed):
    mask = unstructured_mask(_scores(shape, seed), density)
    assert mask.shape == shape and mask.dtype == torch.bool
    assert abs(int(mask.sum()) - density * math.prod(shape)) <= 0.5 + 1e-9


@settings(max_examples=40, deadline=None)
@given(shape=_shapes(4), nm=st.sampled_from([(1, 4), (2, 4), (3, 4), (2, 8), (4, 8)]),
       fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_nm_property(shape, nm, fraction, seed):
    n, m = nm
    if shape[1] % m:
        return
    density = n / m + fraction * (1 - n / m)
    mask = nm_mask(_scores(shape, seed), density, n=n, m=m)
    assert mask.shape == shape
    groups = mask.movedim(1, -1).reshape(-1, m).sum(1)  # (G,) nonzeros per group
    assert bool(((groups <= n) | (groups == m)).all())
    assert abs(int(mask.sum()) - density * math.prod(shape)) <= (m - n) / 2 + 1e-9  # half a group
    if fraction == 0.0:
        assert bool((groups == n).all())


@settings(max_examples=40, deadline=None)
@given(shape=_shapes(2), block=st.sampled_from([(1, 1), (2, 2), (2, 1)]),
       density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_block_property(shape, block, density, seed):
    mask = block_mask(_scores(shape, seed), density, block=block)
    assert mask.shape == shape
    size = block[0] * block[1]
    assert abs(int(mask.sum()) - density * math.prod(shape)) <= size / 2 + 1e-9
    assert pattern_report("w", mask, pattern_for("block", block=block))["valid"]


@settings(max_examples=40, deadline=None)
@given(shape=_shapes(1), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_channel_property(shape, density, seed):
    mask = channel_mask(_scores(shape, seed), density)
    rows = mask.reshape(shape[0], -1)
    assert mask.shape == shape and bool((rows.all(1) | ~rows.any(1)).all())
    assert abs(int(rows.all(1).sum()) - density * shape[0]) <= 0.5 + 1e-9
