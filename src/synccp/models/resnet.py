"""ResNet-18/34/50 backbones (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016).

Our own code with torchvision's layout and parameter names (`conv1`, `bn1`, `layer1.0.conv1`,
`layer2.0.downsample.0`, ...), so a state dict maps one-to-one onto `torchvision.models.resnetXX`
minus `fc`. ResNet-50 uses the "v1.5" bottleneck (stride on the 3×3 conv), as torchvision does.

Two stems:
- ``imagenet``: 7×7 stride-2 conv + 3×3 stride-2 max-pool (the paper's stem);
- ``cifar``: 3×3 stride-1 conv (padding 1), no max-pool (``maxpool`` is an `nn.Identity`), the
  usual small-image variant. solo-learn uses padding 2 here (a 34×34 map from a 32×32 image);
  we keep the standard padding 1.

`width` is the channel count of stage 1 (64 = standard); stages have width·(1, 2, 4, 8) channels,
times 4 (the bottleneck expansion) at their output for ResNet-50. The network ends with a global
average pool: (B, C, H, W) → (B, D), D = `out_dim` = 8·width (18/34) or 32·width (50).

Init: Kaiming-normal (fan_out, ReLU) for every conv, BatchNorm γ=1, β=0, as torchvision.
`zero_init_residual` (zero γ of each block's last BN, Goyal et al. 2017) is off by default, as in
torchvision and solo-learn; it makes each residual branch start as the identity.
"""

from __future__ import annotations

from torch import Tensor, nn

STEMS = ("cifar", "imagenet")


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut (1×1 conv + BN) when the block changes shape, else None (identity)."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_channels, planes, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carries the stride, "v1.5") → 1×1 expand ×4, residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = _conv1x1(in_channels, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_channels, out_channels, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


ARCHITECTURES: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """A ResNet trunk without classifier: (B, C, H, W) → (B, out_dim) pooled features."""

    def __init__(self, block: type[nn.Module], depths: tuple[int, int, int, int], *, stem: str,
                 width: int, in_channels: int, zero_init_residual: bool = False):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv1 = _conv3x3(in_channels, width)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for index, depth in enumerate(depths):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            blocks = []
            for position in range(depth):
                blocks.append(block(channels, planes, stride if position == 0 else 1))
                channels = planes * block.expansion
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = channels
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.last_bn().weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, H', W')
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, D, h, w)
        return self.avgpool(x).flatten(1)  # (B, D)


def build_backbone(name: str, *, stem: str, width: int, in_channels: int,
                   zero_init_residual: bool = False) -> ResNet:
    """Build ResNet-18/34/50 (`name`) with a ``cifar`` or ``imagenet`` `stem`.

    Returns a plain `nn.Module` mapping (B, `in_channels`, H, W) images to (B, `.out_dim`) features.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"backbone name must be one of {', '.join(ARCHITECTURES)}; got {name!r}")
    if stem not in STEMS:
        raise ValueError(f"backbone stem must be one of {', '.join(STEMS)}; got {stem!r}")
    if width < 1 or in_channels < 1:
        raise ValueError(f"backbone width and in_channels must be >= 1; got width={width}, "
                         f"in_channels={in_channels}")
    block, depths = ARCHITECTURES[name]
    return ResNet(block, depths, stem=stem, width=width, in_channels=in_channels,
                  zero_init_residual=zero_init_residual)


def prunable_parameters(backbone: nn.Module) -> dict[str, nn.Parameter]:
    """Every conv and linear weight of `backbone` except the stem conv, by qualified name.

    The stem is the first `nn.Conv2d` in module order (`conv1` for our ResNets). It is left dense
    (DESIGN.md §1): it has few weights and sees the raw pixels. Biases and norm parameters are
    never prunable.
    """
    prunable: dict[str, nn.Parameter] = {}
    stem_seen = False
    for name, module in backbone.named_modules():
        if isinstance(module, nn.Conv2d) and not stem_seen:
            stem_seen = True
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            prunable[f"{name}.weight"] = module.weight
    return prunable
