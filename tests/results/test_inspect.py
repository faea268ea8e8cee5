"""`synccp inspect`: per-layer densities and, for N:M, the second branch's actual layout."""

import pytest

from helpers import tiny_overrides
from synccp.config import load_config
from synccp.results.inspect import format_inspect, inspect_rows
from synccp.train.loop import pretrain


def test_inspect_shows_the_nm_second_branch_layout(fmnist_root, tmp_path):
    """SyncCP's Δ is a density gap for N:M too: d_second = N/M + Δ, i.e. a share
    (1 − N/M − Δ)/(1 − N/M) of the second branch's groups is N:M, the rest dense (the authors'
    code subtracts Δ from the N:M group share instead; docs/sparsity.md)."""
    cfg = load_config(None, tiny_overrides(fmnist_root, **{
        "method.name": '"simclr"', "sparsity.algorithm": '"synccp"', "sparsity.granularity": '"nm"',
        "sparsity.density_gap": 0.1, "sparsity.allocation": '"uniform"'}))
    pretrain(cfg, tmp_path / "run")
    rows, summary = inspect_rows(tmp_path / "run")
    fitting = [r for r in rows if r["second_pattern"] and r["second_pattern"] != "left dense"]
    assert fitting and "2:4 valid" in summary
    for row in fitting:
        share = int(row["second_pattern"].split("%")[0]) / 100
        assert share == pytest.approx((1 - 0.5 - 0.1) / (1 - 0.5), abs=0.13), row
        assert row["online"] == pytest.approx(0.5, abs=1e-6)
    text = format_inspect(tmp_path / "run")
    assert "second branch" in text and "2:4 + " in text
