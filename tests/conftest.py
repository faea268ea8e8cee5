"""Shared fixtures: small datasets written in the exact official file formats."""

import pytest

from helpers import write_idx_fashion_mnist


@pytest.fixture
def fmnist_root(tmp_path, monkeypatch):
    """A tiny Fashion-MNIST (16×16) in official IDX format; SYNCCP_DATA points at it."""
    root = write_idx_fashion_mnist(tmp_path / "fmnist")
    monkeypatch.setenv("SYNCCP_DATA", str(root))
    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    return root
