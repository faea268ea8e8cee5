"""tools/paired.py: differences paired by seed from a report CSV, and which pairs span machines."""

import csv
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _paired():
    spec = importlib.util.spec_from_file_location("paired", ROOT / "tools" / "paired.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_differences_are_paired_by_seed_and_pairs_across_machines_are_named(tmp_path, capsys):
    old, new = "AMD EPYC (SIMD level not recorded)", "AMD EPYC (AVX512)"
    rows = [("dense", 0, 83.0, 85.0, old), ("dense", 1, 82.0, 84.0, old),
            ("gmp", 0, 82.5, 85.5, old), ("gmp", 1, 81.0, 83.0, new), ("gmp", 2, 80.0, 80.0, new)]
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "algorithm", "seed", "knn_top1", "linear_top1", "machine"])
        writer.writerows([f"r{i}", *row] for i, row in enumerate(rows))
    assert _paired().main([str(path), "--a", "algorithm=gmp", "--b", "algorithm=dense"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "knn    a − b = -0.75 ± 0.35 (n = 2; seed 0: -0.50, seed 1: -1.00)"
    assert out[1] == "linear a − b = -0.25 ± 1.06 (n = 2; seed 0: +0.50, seed 1: -1.00)"
    assert out[2] == f"machines differ for seed 1 (a: {new}, b: {old})" and len(out) == 3
