"""Tiny conv + linear networks and a reference training loop for the sparsity tests."""

import copy

import pytest
import torch
from torch import nn

from synccp import Sparsifier
from synccp.train.optim import build_optimizer

DEFAULTS = dict(algorithm="synccp", granularity="unstructured", density=0.25, initial_density=1.0,
                density_gap=0.25, n=2, m=4, block=(4, 4), allocation="global", score_ema=0.0,
                update_every=2, ramp_start_step=1, ramp_end_step=9, steps_per_epoch=4,
                total_steps=12, drop_fraction=0.3, sparse_branch="second", seed=0)


def tiny_net(seed: int = 0, width: int = 8) -> nn.Module:
    """Stem conv (not prunable) → 3×3 conv → 1×1 conv → pooled linear. All C_in % 4 == 0 after
    the stem."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 8))


def not_the_stem(name: str, module: nn.Module) -> bool:
    """Every conv and the linear layer except the stem `0` (the default rule would keep the last
    Linear dense as a head; these tests prune it too)."""
    return name != "0"


class Run:
    """A model (+ EMA target for momentum runs), an optimizer and a Sparsifier, stepped through
    the public path: forward → backward (hooks mask gradients) → optimizer step →
    `Sparsifier.step` (mask update; EMA target update and re-mask)."""

    def __init__(self, *, momentum: bool = False, optimizer: str = "sgd", seed: int = 0,
                 weight_decay: float = 1e-3, tau: float = 0.9, **overrides):
        self.model = tiny_net(seed)
        self.tau = tau
        self.target = None
        if momentum:
            self.target = copy.deepcopy(self.model)
            for p in self.target.parameters():
                p.requires_grad_(False)
        self.optimizer = build_optimizer(optimizer, [self.model], lr=0.05, momentum=0.9,
                                         weight_decay=weight_decay, eta=0.02)
        self.sparsifier = Sparsifier(self.model, target=self.target, optimizer=self.optimizer,
                                     include=not_the_stem, **{**DEFAULTS, **overrides})
        self.records = {}
        self.losses = []

    def encode(self, branch: str, x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.target is None or branch == "online"):
            return self.sparsifier.encoder(branch)(x)

    def step(self, step: int) -> None:
        """Optimizer step number `step` (1-based, the next one), deterministic data."""
        g = torch.Generator().manual_seed(1000 + step)
        x = torch.randn(4, 3, 6, 6, generator=g)
        a, b = (x + 0.1 * torch.randn(x.shape, generator=g) for _ in range(2))
        online, second = self.encode("online", a), self.encode("second", b)
        loss = (online - second).pow(2).mean() + 0.1 * online.pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        record = self.sparsifier.step(None if self.target is None else self.tau)
        if record is not None:
            self.records[step] = record
        self.losses.append(float(loss.detach()))

    def run(self, first: int, last: int) -> "Run":
        for step in range(first, last + 1):
            self.step(step)
        return self


@pytest.fixture
def make_run():
    return Run


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every sparsity test runs with one torch thread (tests/conftest.py)."""
