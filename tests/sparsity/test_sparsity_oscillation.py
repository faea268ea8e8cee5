"""Oscillation metrics against hand-computed examples; totals from summed counts."""

import json

import pytest
import torch

from synccp.sparsity.oscillation import iou, mask_metrics, oscillation


def t(bits):
    return torch.tensor(bits, dtype=torch.bool)


def test_single_pair_by_hand():
    before, after = t([1, 1, 0, 0, 1]), t([1, 0, 1, 0, 1])
    # |A| = 3, |B| = 3, |A∩B| = 2, |A∪B| = 4, |A△B| = 2
    assert oscillation(before, after) == pytest.approx({"flip_rate": 2 / 3, "iou": 0.5,
                                                       "hamming": 3 / 5, "revival_rate": 1 / 3})
    assert iou(before, after) == 0.5


def test_empty_and_identical_masks():
    empty = t([0, 0, 0])
    assert oscillation(empty, empty) == {"flip_rate": 0.0, "iou": 1.0, "hamming": 1.0,
                                         "revival_rate": 0.0}
    assert oscillation(empty, t([1, 0, 0]))["flip_rate"] == 1.0
    same = t([1, 0, 1])
    assert oscillation(same, same) == {"flip_rate": 0.0, "iou": 1.0, "hamming": 1.0,
                                       "revival_rate": 0.0}


def test_hamming_counts_matching_zeros():
    # two disjoint single-weight masks in 100 entries: IoU 0, yet 98% "agreement"
    a, b = torch.zeros(100, dtype=torch.bool), torch.zeros(100, dtype=torch.bool)
    a[0], b[1] = True, True
    assert oscillation(a, b) == pytest.approx({"flip_rate": 2.0, "iou": 0.0, "hamming": 0.98,
                                           "revival_rate": 1.0})


def test_mask_metrics_totals_from_summed_counts():
    before = {"online": {"x": t([1, 1, 1, 1]), "y": t([1, 0])},
              "second": {"x": t([1, 1, 1, 1]), "y": t([1, 1])}}
    after = {"online": {"x": t([1, 1, 0, 0]), "y": t([0, 1])},
             "second": {"x": t([1, 1, 1, 0]), "y": t([1, 1])}}
    record = mask_metrics(before, after)
    json.dumps(record)
    online = record["oscillation"]["online"]
    # x: |A| 4, |B| 2, ∩ 2 → flip 0.5, IoU 0.5; y: |A| 1, |B| 1, ∩ 0 → flip 2, IoU 0
    assert online["layers"]["x"] == pytest.approx({"flip_rate": 0.5, "iou": 0.5, "hamming": 0.5,
                                                         "revival_rate": 0.0})
    assert online["layers"]["y"] == pytest.approx({"flip_rate": 2.0, "iou": 0.0, "hamming": 0.0,
                                                         "revival_rate": 1.0})
    # totals: |A| 5, |B| 3, ∩ 2, ∪ 6, △ 4 over 6 entries (not the mean of the layer ratios)
    assert online["total"] == pytest.approx({"flip_rate": 4 / 5, "iou": 2 / 6, "hamming": 2 / 6,
                                            "revival_rate": 1 / 3})
    assert record["density"]["online"]["total"] == pytest.approx(3 / 6)
    assert record["density"]["online"]["layers"] == pytest.approx({"x": 0.5, "y": 0.5})
    assert record["density"]["second"]["total"] == pytest.approx(5 / 6)
    # online vs second after: x: 2 vs 3, ∩ 2 → 2/3; y: 1 vs 2, ∩ 1 → 1/2; total ∩ 3, ∪ 5
    pair = record["oscillation"]["online_vs_second_iou"]
    assert pair["total"] == pytest.approx(3 / 5)
    assert pair["layers"] == pytest.approx({"x": 2 / 3, "y": 0.5})
    assert all(isinstance(v, float) for v in online["total"].values())


def test_revival_rate_is_zero_when_only_pruning():
    before, after = t([1, 1, 1, 0]), t([1, 0, 1, 0])
    assert oscillation(before, after)["revival_rate"] == 0.0
    assert oscillation(before, after)["flip_rate"] == pytest.approx(1 / 3)  # pruning alone flips
