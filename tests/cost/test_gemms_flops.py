"""GEMM extraction and MAC counts: parity with torch's FlopCounterMode and hand counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from synccp.cost.flops import dense_macs, needs_dense_gradients, sparse_macs
from synccp.cost.gemms import (
    Gemm,
    Pass,
    method_passes,
    pass_phases,
    phase_gemm,
    trace_layers,
    training_layers,
)
from synccp.models import build_backbone, mlp

TRAIN = Pass("online", "a", True, ("backbone", "projector", "predictor"))


def _counted_flops(module: nn.Module, x: torch.Tensor, *, backward: bool) -> int:
    with FlopCounterMode(display=False) as counter:
        out = module(x)
        if backward:
            out.sum().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_dense_macs_match_flop_counter_on_resnets(name):
    torch.manual_seed(0)
    backbone = build_backbone(name, stem="cifar", width=8, in_channels=3)
    x = torch.randn(2, 3, 16, 16)
    layers = training_layers(backbone, in_channels=3, image_size=16)
    forward = sum(dense_macs(layer, "forward", 2) for layer in layers)
    training = sum(dense_macs(layer, p, 2) for layer in layers for p in pass_phases(layer, TRAIN))
    assert 2 * forward == _counted_flops(backbone, x, backward=False)
    assert 2 * training == _counted_flops(backbone, x, backward=True)


def test_head_layers_match_flop_counter():
    head = mlp(16, 32, 8)
    x = torch.randn(4, 16, requires_grad=True)
    layers = trace_layers(head, (1, 16), part="projector", mark_first=False)
    assert [layer.name for layer in layers] == ["projector.0.weight", "projector.3.weight"]
    total = sum(dense_macs(layer, p, 4) for layer in layers for p in pass_phases(layer, TRAIN))
    assert 2 * total == _counted_flops(head, x, backward=True)


def test_two_layer_net_hand_count():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    conv, linear = trace_layers(net, (1, 3, 8, 8))
    assert conv.first and not linear.first
    assert phase_gemm(conv, "forward", 5) == Gemm(5 * 64, 4, 27)
    assert phase_gemm(conv, "wgrad", 5) == Gemm(27, 4, 5 * 64)
    assert phase_gemm(linear, "dgrad", 5) == Gemm(5, 256, 10)
    assert pass_phases(conv, TRAIN) == ("forward", "wgrad")  # no gradient w.r.t. the image
    hand = 5 * 64 * 4 * 27 * 2 + 5 * 10 * 256 * 3  # conv fwd+wgrad, linear fwd+dgrad+wgrad
    both = (conv, linear)
    assert sum(dense_macs(layer, p, 5) for layer in both for p in pass_phases(layer, TRAIN)) == hand


def test_sparse_macs_scale_with_kept_weights_and_dense_gradient_rule():
    (conv,) = trace_layers(nn.Conv2d(8, 8, 3, padding=1), (1, 8, 4, 4))
    dense = dense_macs(conv, "forward", 2)
    assert sparse_macs(conv, "forward", 2, 0.5) == dense // 2  # N:M 2:4 halves forward exactly
    assert sparse_macs(conv, "dgrad", 2, 0.25) == dense // 4
    assert sparse_macs(conv, "wgrad", 2, 0.25, dense_gradients=True) == dense
    assert needs_dense_gradients("rigl", update_step=True)
    assert not needs_dense_gradients("rigl", update_step=False)
    assert not needs_dense_gradients("synccp", update_step=True)
    with pytest.raises(ValueError, match="sparsity.algorithm"):
        needs_dense_gradients("magic", update_step=True)


def test_method_passes_follow_the_method_contract():
    byol = method_passes("byol")
    assert [(p.branch, p.view, p.backward) for p in byol] == [
        ("online", "a", True),
        ("online", "b", True),
        ("second", "a", False),
        ("second", "b", False),
    ]
    assert "predictor" not in byol[2].parts
    simclr = method_passes("simclr")
    assert [(p.branch, p.view, p.backward) for p in simclr] == [
        ("online", "a", True),
        ("second", "b", True),
    ]
    with pytest.raises(ValueError, match="method.name"):
        method_passes("dino")


@pytest.mark.parametrize(
    "shape, block", [((16, 8, 3, 3), (1, 1)), ((16, 8, 3, 3), (4, 4)), ((32, 64), (1, 1))]
)
def test_random_mask_counts_equal_a_fresh_draw_at_every_density(shape, block):
    """The cached sorted draw gives exactly the counts of {u < d} for the same u, at any d."""
    import math

    from synccp.cost.structure import RandomMask

    rows, cols = shape[0], math.prod(shape[1:])
    sampler = RandomMask(shape, block, torch.Generator().manual_seed(7))
    for density in (0.05, 0.2, 0.5, 0.93):
        u = torch.rand(
            (rows // block[0], cols // block[1]), generator=torch.Generator().manual_seed(7)
        )
        mask = (u < density).repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
        got_rows, got_cols = sampler.counts(density)
        assert torch.equal(got_rows, mask.sum(1, dtype=torch.float64))
        assert torch.equal(got_cols, mask.sum(0, dtype=torch.float64))
