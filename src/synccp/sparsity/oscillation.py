"""Architecture oscillation: how much a mask changes between consecutive updates.

For masks A (before) and B (after): flip rate = |A △ B| / |A| (share of the active set that
changed), IoU = |A ∩ B| / |A ∪ B|, and the SyncCP authors' Hamming agreement = share of all entries
equal (it counts matching zeros, so it is dominated by the sparsity level). Totals are computed
from counts summed over layers, never by averaging per-layer ratios.

Conventions for empty sets: IoU of two empty masks is 1; the flip rate from an empty A is 0 when B
is empty too and 1 otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pair_counts(before: Tensor, after: Tensor) -> Tensor:
    """(3,) int64 on the masks' device: |A|, |B|, |A ∩ B|. No host synchronisation."""
    return torch.stack([torch.count_nonzero(before), torch.count_nonzero(after),
                        torch.count_nonzero(before & after)])


def iou_from_counts(active_first: int, active_second: int, both: int) -> float:
    """|A ∩ B| / |A ∪ B| from |A|, |B|, |A ∩ B| (1 when both are empty)."""
    union = active_first + active_second - both
    return float(both / union) if union else 1.0


def from_counts(active_before: int, active_after: int, both: int, numel: int) -> dict[str, float]:
    """Flip rate, IoU, Hamming agreement and revival rate from |A|, |B|, |A ∩ B| and the size.

    The revival rate |B \\ A| / |B| is the share of the new active set that was inactive before:
    exactly 0 for prune-only algorithms (GMP, SyncCP), > 0 where weights are regrown (RigL,
    GraNet). The flip rate cannot tell the two apart during a ramp: pruning alone flips
    1 − |B|/|A| of the active set."""
    changed = active_before + active_after - 2 * both  # |A △ B|
    if active_before:
        flip = changed / active_before
    else:
        flip = 0.0 if changed == 0 else 1.0
    return {"flip_rate": float(flip), "iou": iou_from_counts(active_before, active_after, both),
            "hamming": float(1.0 - changed / numel) if numel else 1.0,
            "revival_rate": float((active_after - both) / active_after) if active_after else 0.0}


def oscillation(before: Tensor, after: Tensor) -> dict[str, float]:
    """Flip rate, IoU and Hamming agreement of one pair of masks (one host synchronisation)."""
    a, b, both = pair_counts(before, after).tolist()
    return from_counts(a, b, both, before.numel())


def iou(first: Tensor, second: Tensor) -> float:
    """|A ∩ B| / |A ∪ B| of two masks (1 when both are empty)."""
    return iou_from_counts(*pair_counts(first, second).tolist())


def mask_counts(before: dict[str, dict[str, Tensor]], after: dict[str, dict[str, Tensor]]) -> dict:
    """Host-side counts for `metrics_from_counts`, gathered with one host synchronisation.

    `before`/`after` map branch ("online", "second") → parameter name → bool mask. Returns
    {branch: {name: [|A|, |B|, |A ∩ B|]}, "both": {name: |B_online ∩ B_second|},
    "numel": {name: n}}.
    """
    names = list(after["online"])
    online = [pair_counts(before["online"][name], after["online"][name]) for name in names]
    second, both = [], []
    for name, online_counts in zip(names, online, strict=True):
        if after["second"][name] is after["online"][name]:  # one mask for both branches
            same_before = before["second"][name] is before["online"][name]
            second.append(online_counts if same_before
                          else pair_counts(before["second"][name], after["second"][name]))
            both.append(online_counts[1:2])
        else:
            second.append(pair_counts(before["second"][name], after["second"][name]))
            shared = torch.count_nonzero(after["online"][name] & after["second"][name])
            both.append(shared.reshape(1))
    rows = online + second + both
    flat = torch.cat(rows).tolist() if rows else []
    counts: dict = {branch: {name: flat[3 * (k * len(names) + i): 3 * (k * len(names) + i) + 3]
                             for i, name in enumerate(names)}
                    for k, branch in enumerate(("online", "second"))}
    counts["both"] = dict(zip(names, flat[6 * len(names):], strict=True))
    counts["numel"] = {name: after["online"][name].numel() for name in names}
    return counts


def _branch_metrics(counts: dict[str, list[int]], numels: dict[str, int]) -> tuple[dict, dict]:
    """Density and oscillation of one branch from per-layer [|A|, |B|, |A∩B|]."""
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    numel = sum(numels.values())
    density = {"total": totals[1] / numel if numel else 1.0,
               "layers": {name: c[1] / numels[name] for name, c in counts.items()}}
    swing = {"total": from_counts(totals[0], totals[1], totals[2], numel),
             "layers": {name: from_counts(c[0], c[1], c[2], numels[name])
                        for name, c in counts.items()}}
    return density, swing


def metrics_from_counts(counts: dict) -> dict:
    """The metrics record of a mask update, as plain floats (JSON-serialisable).

    {"density": {branch: {"total", "layers"}}, "oscillation": {branch: {"total": {flip_rate, iou,
    hamming}, "layers": ...}, "online_vs_second_iou": {"total", "layers"}}}.
    """
    density, swing = {}, {}
    for branch in ("online", "second"):
        density[branch], swing[branch] = _branch_metrics(counts[branch], counts["numel"])
    pair = {name: [counts["online"][name][1], counts["second"][name][1], both]
            for name, both in counts["both"].items()}
    swing["online_vs_second_iou"] = {
        "total": iou_from_counts(*[sum(p[i] for p in pair.values()) for i in range(3)]),
        "layers": {name: iou_from_counts(*p) for name, p in pair.items()}}
    return {"density": density, "oscillation": swing}


def mask_metrics(before: dict[str, dict[str, Tensor]], after: dict[str, dict[str, Tensor]]) -> dict:
    """`metrics_from_counts(mask_counts(before, after))`: one host synchronisation."""
    return metrics_from_counts(mask_counts(before, after))
