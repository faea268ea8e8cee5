"""Shared fixtures: small datasets written in the exact official file formats, one torch thread."""

import re

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


# ------------------------------------------------------------------ the hostile suite's report
# Every hostile case records one line (case, expected, got) through the `hostile` fixture; the
# table is printed at the end of every pytest run (`make test` included), with the outcome.
HOSTILE: dict[str, tuple[str, str]] = {}


@pytest.fixture
def hostile(request):
    """`hostile(expected, got)`: record this case's line for the end-of-run table."""

    def record(expected: str, got: str) -> None:
        got = re.sub(
            r"/(?:[^/\s'\"]+/)+", ".../", " ".join(str(got).split())
        )  # paths: last part only
        HOSTILE[request.node.nodeid] = (expected, got[:150])

    return record


def pytest_terminal_summary(terminalreporter):
    if not HOSTILE:
        return
    outcome = {}
    for kind in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(kind, []):
            if getattr(report, "when", "call") == "call" or kind == "error":
                outcome[report.nodeid] = kind
    passed = sum(outcome.get(nodeid) == "passed" for nodeid in HOSTILE)
    terminalreporter.write_sep("-", f"hostile suite: {len(HOSTILE)} cases, {passed} as expected")
    for nodeid, (expected, got) in HOSTILE.items():
        case = nodeid.split("::", 1)[-1]
        mark = "ok  " if outcome.get(nodeid) == "passed" else "FAIL"
        terminalreporter.write_line(f"{mark} {case} | expected: {expected} | got: {got}")


@pytest.fixture(scope="session")
def finished_template(tmp_path_factory):
    """A finished, evaluated tiny run (2 epochs: prev.pt and last.pt) and its data, built once per
    session; tests work on copies (`hostile_kit.run_copy`)."""
    from helpers import tiny_overrides
    from synccp.cli import main

    base = tmp_path_factory.mktemp("hostile")
    root = write_idx_fashion_mnist(base / "fmnist")
    run = base / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNCCP_CACHE", str(base / "cache"))
        args = ["pretrain", "--out", str(run)] + [
            a for s in tiny_overrides(root) for a in ("--set", s)
        ]
        assert main(args) == 0
    torch.set_num_threads(before)
    return run
