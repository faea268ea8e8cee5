"""The claims' verdicts: the paired t-test against closed forms, pairing by seed and recipe, and
each claim's rule on fabricated run directories (results/claims.py, results/paired_t.py)."""

import math

import pytest

from synccp.results.claims import (
    CLAIMS,
    Arm,
    claim_comparisons,
    claims_lines,
    compare,
    group_verdicts,
)
from synccp.results.paired_t import paired_t, regularized_beta, t_two_sided_p
from synccp.results.report import build_report, load_run, run_row
from synccp.results.tables import with_dense_differences

UNSTRUCTURED, NM = ("unstructured", 0.1), ("nm 2:4", 0.5)
NOISE = (0.0, 0.1, -0.1)  # per seed: a spread that a +1 shift clears at α = 0.05 with 3 seeds


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 4.303, 12.706, 40.0])
def test_t_p_values_match_the_closed_forms_of_one_and_two_degrees_of_freedom(t):
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
    assert t_two_sided_p(-t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-12)


@pytest.mark.parametrize("df,critical", [(2, 4.303), (3, 3.182), (4, 2.776), (10, 2.228),
                                         (30, 2.042)])
def test_the_tabulated_5_percent_critical_values_give_p_0_05(df, critical):
    assert t_two_sided_p(critical, df) == pytest.approx(0.05, abs=2e-4)


@pytest.mark.parametrize("a,b,x", [(0.5, 0.5, 0.2), (3.0, 0.5, 0.9), (1.5, 4.0, 0.6)])
def test_the_regularized_beta_is_symmetric_and_exact_where_it_has_a_closed_form(a, b, x):
    assert regularized_beta(a, b, x) == pytest.approx(1 - regularized_beta(b, a, 1 - x), abs=1e-12)
    assert regularized_beta(a, 1.0, x) == pytest.approx(x ** a, abs=1e-12)
    assert regularized_beta(1.0, 1.0, x) == pytest.approx(x, abs=1e-12)


def test_paired_t_of_equal_differences_and_of_too_few():
    assert paired_t([0.5, 0.5, 0.5]) == (math.inf, 0.0)
    assert paired_t([0.0, 0.0]) == (0.0, 1.0)
    t, p = paired_t([0.23, 0.39, 0.55])  # mean 0.39, std 0.16: t = 4.22 with 2 df
    assert t == pytest.approx(0.39 / (0.16 / math.sqrt(3)), rel=1e-9) and 0.05 < p < 0.06
    with pytest.raises(ValueError, match="at least 2"):
        paired_t([1.0])


def _rows(root, make_run, cells):
    """Report rows of fabricated runs: cells = {(method, algorithm, granularity, gap): shift},
    kNN = 80 + shift + NOISE[seed], linear = 82 + shift + NOISE[seed]; seeds 0-2 unless the
    cell's value is (shift, seeds)."""
    rows = []
    for (method, algorithm, granularity, gap), value in cells.items():
        shift, seeds = value if isinstance(value, tuple) else (value, range(3))
        for seed in seeds:
            name = f"{method}_{algorithm}_{granularity}_{gap}_s{seed}"
            path = make_run(root / name, method=method, algorithm=algorithm,
                            granularity=granularity, gap=gap, seed=seed,
                            knn=80 + shift + NOISE[seed], linear=82 + shift + NOISE[seed],
                            cost=False)
            rows.append(run_row(load_run(path)))
    return with_dense_differences(rows)


def _verdict(rows, key):
    claim = next(c for c in CLAIMS if c.key == key)
    groups = group_verdicts(claim, claim_comparisons(rows, claim))
    return claim.combine(list(groups.values())), groups


def test_compare_pairs_seeds_and_waits_below_three(tmp_path, make_run):
    rows = _rows(tmp_path, make_run, {("simclr", "synccp", "unstructured", 0.1): 1.0,
                                      ("simclr", "granet", "unstructured", 0.1): (0.0, [0, 2]),
                                      ("simclr", "synccp", "unstructured", 0.2): 5.0})
    (c,) = compare(rows, "simclr", UNSTRUCTURED, Arm("synccp"), Arm("granet"))
    assert c.seeds == (0, 2) and c.knn == pytest.approx((1.0, 1.0))  # Δ 0.2 is another arm
    assert c.outcome() == "waiting" and c.test() is None
    (c,) = compare(rows, "simclr", UNSTRUCTURED, Arm("synccp", 0.2), Arm("synccp"))
    assert c.knn == pytest.approx((4.0, 4.0, 4.0)) and c.outcome() == "a"
    assert compare(rows, "byol", UNSTRUCTURED, Arm("synccp"), Arm("granet")) == []


def test_claim_c_needs_synccp_ahead_of_every_sparse_baseline_for_both_methods(tmp_path,
                                                                              make_run):
    cells = {(m, alg, g, 0.1): (1.0 if alg == "synccp" else 0.0)
             for m in ("simclr", "byol") for g in ("unstructured", "nm")
             for alg in ("synccp", "gmp", "granet", "rigl", "static")}
    rows = _rows(tmp_path / "all", make_run, cells)
    assert _verdict(rows, "c")[0] == "confirmed"
    assert "**confirmed**" in "\n".join(claims_lines(rows))
    # one baseline ahead of SyncCP in one group refutes the claim
    rows = _rows(tmp_path / "gmp", make_run, {**cells, ("byol", "gmp", "nm", 0.1): 2.0})
    verdict, groups = _verdict(rows, "c")
    assert verdict == "refuted" and groups["byol nm 2:4"] == "refuted"
    assert groups["simclr unstructured"] == "confirmed"
    # a tie (SyncCP level with GraNet) leaves it unresolved; a missing group keeps it waiting
    rows = _rows(tmp_path / "tie", make_run, {**cells, ("simclr", "granet", "nm", 0.1): 1.0})
    assert _verdict(rows, "c") == ("not resolved", {**groups, "byol nm 2:4": "confirmed",
                                                    "simclr nm 2:4": "not resolved"})
    partial = {k: v for k, v in cells.items() if k[0] == "simclr"}
    rows = _rows(tmp_path / "simclr", make_run, partial)
    assert _verdict(rows, "c")[0] == "waiting"


def test_claim_a_is_confirmed_by_one_method_with_sdclr_behind_dense(tmp_path, make_run):
    rows = _rows(tmp_path / "one", make_run, {("mocov2", "dense", "unstructured", 0.1): 0.0,
                                              ("mocov2", "sdclr", "unstructured", 0.1): -1.0})
    verdict, groups = _verdict(rows, "a")
    assert verdict == "confirmed" and groups["simclr unstructured"] == "waiting"
    ahead = {(m, alg, "unstructured", 0.1): (1.0 if alg == "sdclr" else 0.0)
             for m in ("simclr", "mocov2", "barlow", "byol") for alg in ("dense", "sdclr")}
    rows = _rows(tmp_path / "ahead", make_run, ahead)
    assert _verdict(rows, "a")[0] == "refuted"
    three = {k: v for k, v in ahead.items() if k[0] != "barlow"}
    assert _verdict(_rows(tmp_path / "three", make_run, three), "a")[0] == "waiting"


def test_claim_b_and_the_gap_ablation_decide_on_their_deciding_pairs_only(tmp_path, make_run):
    cells = {(m, alg, "unstructured", 0.1): (1.0 if alg == "synccp" else 0.0)
             for m in ("simclr", "byol") for alg in ("synccp", "granet", "rigl")}
    # GMP − GraNet is shown, not deciding: GraNet far ahead of GMP changes nothing
    rows = _rows(tmp_path / "b", make_run, {**cells, ("simclr", "gmp", "unstructured", 0.1): -3.0})
    assert _verdict(rows, "b")[0] == "confirmed"
    # Δ 0 is the GMP cell (SyncCP at Δ 0 is GMP bit for bit); a SyncCP run at Δ 0 is not read
    gaps = {(m, alg, "unstructured", gap): shift for m in ("simclr", "byol")
            for alg, gap, shift in (("gmp", 0.1, 0.0), ("synccp", 0.1, 1.0),
                                    ("synccp", 0.3, -2.0), ("synccp", 0.0, 5.0))}
    rows = _rows(tmp_path / "gap", make_run, gaps)
    verdict, groups = _verdict(rows, "Δ")
    assert verdict == "confirmed" and set(groups) == {"simclr unstructured", "byol unstructured"}
    lines = "\n".join(claims_lines(rows))
    assert "| simclr | unstructured | synccp Δ 0.1 − gmp | 3 | +1.00, +1.00, +1.00 |" in lines


def test_the_report_has_a_claims_section_only_when_a_claim_has_runs(tmp_path, make_run):
    _rows(tmp_path / "runs", make_run, {("simclr", "synccp", "unstructured", 0.1): 1.0,
                                        ("simclr", "rigl", "unstructured", 0.1): 0.0})
    text = build_report([tmp_path / "runs"], tmp_path / "out").read_text()
    assert "## Claims, paired by seed" in text
    assert "| simclr | unstructured | synccp − rigl | 3 | +1.00, +1.00, +1.00 |" in text
    assert "simclr unstructured: waiting" in text  # GraNet has not run
    make_run(tmp_path / "alone" / "dense_s0", method="simclr", algorithm="dense", cost=False)
    assert "## Claims" not in build_report([tmp_path / "alone"],
                                           tmp_path / "out2").read_text()
