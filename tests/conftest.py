"""Shared fixtures: small datasets written in the exact official file formats, one torch thread."""

import pytest
import torch

from helpers import write_idx_fashion_mnist


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: tiny tensors gain nothing from more, and on the shared
    2-core machines (or with two processes side by side) extra threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fmnist_root(tmp_path, monkeypatch):
    """A tiny Fashion-MNIST (16×16) in official IDX format; SYNCCP_DATA points at it."""
    root = write_idx_fashion_mnist(tmp_path / "fmnist")
    monkeypatch.setenv("SYNCCP_DATA", str(root))
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    return root
