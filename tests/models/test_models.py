"""Backbones (shapes, torchvision layout, init), heads, prunable set, EMA and the τ schedule."""

import math

import pytest
import torch
from torch import nn

from synccp.models import (
    build_backbone,
    cosine_tau,
    ema_update_,
    frozen_copy,
    mlp,
    prunable_parameters,
)

# torchvision.models.resnetXX(num_classes=1000) parameter counts minus the fc layer
TORCHVISION_PARAMS_WITHOUT_FC = {
    "resnet18": 11_689_512 - (512 * 1000 + 1000),
    "resnet34": 21_797_672 - (512 * 1000 + 1000),
    "resnet50": 25_557_032 - (2048 * 1000 + 1000),
}


@pytest.mark.parametrize("name, expansion", [("resnet18", 1), ("resnet34", 1), ("resnet50", 4)])
@pytest.mark.parametrize("stem, size, final_map", [("cifar", 16, 2), ("imagenet", 32, 1)])
def test_backbone_shapes(name, expansion, stem, size, final_map):
    torch.manual_seed(0)
    backbone = build_backbone(name, stem=stem, width=4, in_channels=1)
    assert backbone.out_dim == 4 * 8 * expansion
    maps = {}

    def record(stage):
        def hook(module, inputs, output):
            maps[stage] = output.shape
        return hook

    backbone.layer1.register_forward_hook(record("layer1"))
    backbone.layer4.register_forward_hook(record("layer4"))
    features = backbone(torch.randn(2, 1, size, size))
    assert features.shape == (2, backbone.out_dim)
    # cifar stem keeps the resolution into stage 1; imagenet stem divides it by 4 (conv + pool)
    stage1 = size if stem == "cifar" else size // 4
    assert maps["layer1"] == (2, 4 * expansion, stage1, stage1)
    assert maps["layer4"] == (2, backbone.out_dim, final_map, final_map)
    kernel = 3 if stem == "cifar" else 7
    assert backbone.conv1.weight.shape == (4, 1, kernel, kernel)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_full_width_parameter_count_equals_torchvision(name):
    backbone = build_backbone(name, stem="imagenet", width=64, in_channels=3)
    assert sum(p.numel() for p in backbone.parameters()) == TORCHVISION_PARAMS_WITHOUT_FC[name]
    assert backbone.out_dim == (2048 if name == "resnet50" else 512)


def _shapes(name):
    backbone = build_backbone(name, stem="cifar", width=4, in_channels=1)
    return {n: p.shape for n, p in backbone.named_parameters()}


def test_parameter_names_follow_torchvision_layout():
    names18 = _shapes("resnet18")
    for name in ["conv1.weight", "bn1.weight", "bn1.bias", "layer1.0.conv1.weight",
                 "layer1.1.bn2.bias", "layer2.0.downsample.0.weight",
                 "layer2.0.downsample.1.weight",
                 "layer4.1.conv2.weight"]:
        assert name in names18
    assert "layer1.0.downsample.0.weight" not in names18  # stage 1 keeps the shape: identity
    assert names18["layer2.0.conv1.weight"] == (8, 4, 3, 3)
    names34 = _shapes("resnet34")
    assert "layer3.5.conv2.weight" in names34 and "layer3.6.conv1.weight" not in names34
    names50 = _shapes("resnet50")
    assert names50["layer1.0.conv3.weight"] == (16, 4, 1, 1)
    assert names50["layer1.0.downsample.0.weight"] == (16, 4, 1, 1)  # expansion ×4
    assert names50["layer2.0.conv2.weight"] == (8, 8, 3, 3)  # stride on the 3×3 ("v1.5")
    assert not any(n.startswith("fc.") for n in names50)


def test_init_is_kaiming_fan_out_and_unit_batchnorm():
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", stem="cifar", width=64, in_channels=3)
    weight = backbone.layer4[0].conv2.weight  # (512, 512, 3, 3): fan_out = 512·9
    assert weight.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    assert weight.mean().abs().item() < 1e-3
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    zero = build_backbone("resnet18", stem="cifar", width=4, in_channels=3, zero_init_residual=True)
    assert torch.all(zero.layer1[0].bn2.weight == 0) and torch.all(zero.layer1[0].bn1.weight == 1)


def test_unknown_backbone_or_stem_is_an_error_naming_the_value():
    with pytest.raises(ValueError, match="resnet101"):
        build_backbone("resnet101", stem="cifar", width=4, in_channels=3)
    with pytest.raises(ValueError, match="tiny"):
        build_backbone("resnet18", stem="tiny", width=4, in_channels=3)


def test_prunable_parameters_are_all_convs_but_the_stem():
    backbone = build_backbone("resnet18", stem="cifar", width=4, in_channels=1)
    prunable = prunable_parameters(backbone)
    convs = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20  # stem + 8 blocks × 2 + 3 downsample
    assert "conv1.weight" not in prunable
    assert set(prunable) == {f"{n}.weight" for n in convs if n != "conv1"}
    assert "layer3.0.downsample.0.weight" in prunable
    params = dict(backbone.named_parameters())
    assert all(prunable[n] is params[n] for n in prunable)  # the live tensors, not copies
    assert all(p.ndim == 4 for p in prunable.values())
    generic = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Linear(2, 2))
    assert prunable_parameters(generic).keys() == {"1.weight", "2.weight"}


def test_mlp_structure():
    layer_types = lambda seq: [type(m).__name__ for m in seq]  # noqa: E731
    assert layer_types(mlp(8, 16, 4)) == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert layer_types(mlp(8, 16, 4, num_layers=3, last_bn=True)) == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert layer_types(mlp(8, 16, 4, hidden_bn=False)) == ["Linear", "ReLU", "Linear"]
    head = mlp(8, 16, 4, num_layers=3, last_bn=True)
    assert head[0].bias is None and head[-2].bias is None and not head[-1].affine
    assert mlp(8, 16, 4, hidden_bn=False)[0].bias is not None
    assert head(torch.randn(5, 8)).shape == (5, 4)


def test_ema_update_matches_the_formula_and_copies_buffers():
    torch.manual_seed(0)
    online = mlp(6, 8, 3)
    target = frozen_copy(online)
    assert not any(p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    online(torch.randn(10, 6))  # changes the BN running statistics
    before = {n: p.clone() for n, p in target.named_parameters()}
    ema_update_(target, online, 0.9)
    for name, theta in online.named_parameters():
        expected = 0.9 * before[name] + 0.1 * theta.detach()
        torch.testing.assert_close(dict(target.named_parameters())[name], expected)
    for name, buffer in online.named_buffers():
        assert torch.equal(dict(target.named_buffers())[name], buffer)
    ema_update_(target, online, 0.0)
    pairs = zip(target.parameters(), online.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    snapshot = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        online[0].weight.add_(1.0)
    ema_update_(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), snapshot, strict=True))


def test_cosine_tau_endpoints_and_shape():
    assert cosine_tau(0, 100, base=0.99, final=1.0) == pytest.approx(0.99)
    assert cosine_tau(100, 100, base=0.99, final=1.0) == pytest.approx(1.0)
    assert cosine_tau(50, 100, base=0.99, final=1.0) == pytest.approx(0.995)
    # BYOL: τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2
    assert cosine_tau(25, 100, base=0.996, final=1.0) == pytest.approx(
        1 - 0.004 * (math.cos(math.pi / 4) + 1) / 2
    )
    values = [cosine_tau(k, 40, base=0.9, final=0.999) for k in range(41)]
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert cosine_tau(500, 100, base=0.99, final=1.0) == pytest.approx(1.0)  # clamped
