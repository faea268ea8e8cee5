"""Behaviour fingerprint: fixed-seed tiny runs give the metrics, masks and weights stored in
tests/fingerprints.json, so a refactor that changes what training does fails here.

On the machine that recorded the file (same torch, same CPU model and SIMD level) everything must
match exactly: every metrics.jsonl record (timing fields aside), every mask bit and every weight
checksum. On another CPU, float reductions may round differently, so floats are compared to 1e-3
relative and masks by their exact per-layer counts.

Re-record only when a change of behaviour is intended, and say so in the commit:
    OMP_NUM_THREADS=1 .venv/bin/python tests/test_fingerprint.py --record
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from synccp.study import cpu_capability, cpu_model

HERE = Path(__file__).resolve().parent
STORE = HERE / "fingerprints.json"
TIMING = {"images_per_s", "wall_s", "seconds"}  # differ run to run; never part of behaviour

CASES = {  # name → overrides on top of helpers.tiny_overrides
    "byol_synccp": {},
    "simclr_granet": {"method.name": '"simclr"', "sparsity.algorithm": '"granet"'},
    "mocov2_sdclr": {"method.name": '"mocov2"', "sparsity.algorithm": '"sdclr"'},
    "barlow_rigl_nm": {
        "method.name": '"barlow"',
        "sparsity.algorithm": '"rigl"',
        "sparsity.granularity": '"nm"',
    },
}


def machine() -> str:
    return f"torch {torch.__version__} | {cpu_model()} | {cpu_capability()}"


def _drop_timing(value):
    if isinstance(value, dict):
        return {k: _drop_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_drop_timing(v) for v in value]
    return value


def fingerprint(run: Path) -> dict:
    from safetensors.torch import load_file

    metrics = [
        _drop_timing(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    masks = {
        name: {
            "kept": int(m.sum()),
            "sha256": hashlib.sha256(m.to(torch.uint8).numpy().tobytes()).hexdigest(),
        }
        for name, m in sorted(load_file(str(run / "masks.safetensors")).items())
    }
    weights = {
        name: [float(t.double().sum()), float(t.double().abs().sum())]
        for name, t in sorted(load_file(str(run / "model.safetensors")).items())
        if t.is_floating_point()
    }
    return {"metrics": metrics, "masks": masks, "weights": weights}


def run_case(name: str, tmp: Path) -> dict:
    sys.path.insert(0, str(HERE))
    from helpers import tiny_overrides, write_idx_fashion_mnist
    from synccp.config import load_config
    from synccp.train.loop import pretrain

    torch.set_num_threads(1)
    root = write_idx_fashion_mnist(tmp / "data")
    pretrain(load_config(None, tiny_overrides(root, **CASES[name])), tmp / name)
    return fingerprint(tmp / name)


def _close(a, b, exact: bool, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (
            f"{where}: keys {sorted(a)} != {sorted(b)}"
        )
        for k in a:
            _close(a[k], b[k], exact, f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, exact, f"{where}[{i}]")
    elif isinstance(a, float) and not exact:
        assert math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixed_seed_run_matches_stored_fingerprint(name, tmp_path):
    stored = json.loads(STORE.read_text())
    got = run_case(name, tmp_path)
    want = stored["cases"][name]
    exact = stored["machine"] == machine()
    if not exact:  # another CPU: mask bits may differ where scores tie to rounding; counts may not
        for entry in list(got["masks"].values()) + list(want["masks"].values()):
            entry.pop("sha256")
    _close(got, want, exact, name)


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cases = {name: run_case(name, Path(tmp)) for name in sorted(CASES)}
    STORE.write_text(
        json.dumps({"machine": machine(), "cases": cases}, indent=1, sort_keys=True) + "\n"
    )
    print(f"recorded {len(cases)} cases on {machine()} → {STORE}")
