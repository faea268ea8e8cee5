"""Fixtures of the cost tests: a tiny conv net (kept small: 2 shared CPU cores)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Stem conv 1→8 (3×3, stride 1), conv 8→16 (3×3, stride 2), pool: (B, 1, 8, 8) → (B, 16)."""

    out_dim = 16

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x))).mean((2, 3))


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()
