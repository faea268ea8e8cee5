"""tools/paired.py: differences paired by seed from a report CSV, and which pairs span machines."""

import csv
import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "paired", Path(__file__).parents[2] / "tools" / "paired.py"
)
paired = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(paired)


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run(algorithm, seed, gap, knn, linear):
    return {
        "run": f"{algorithm}_{gap}_s{seed}",
        "method": "simclr",
        "algorithm": algorithm,
        "seed": seed,
        "density_gap": gap,
        "knn_top1": knn,
        "linear_top1": linear,
    }


def test_differences_are_paired_by_seed_and_only_over_shared_seeds(tmp_path, capsys):
    path = write_csv(
        tmp_path / "r.csv",
        [
            run("synccp", 0, "0.1", 70.0, 80.0),
            run("synccp", 1, "0.1", 60.0, 70.0),
            run("synccp", 2, "0.1", 1.0, 1.0),
            run("granet", 0, "", 69.0, 79.5),
            run("granet", 1, "", 61.0, 68.5),
            run("synccp", 0, "0.2", 0.0, 0.0),
        ],
    )
    assert (
        paired.main(
            [
                str(path),
                "--where",
                "method=simclr",
                "--a",
                "algorithm=synccp",
                "density_gap=0.10",
                "--b",
                "algorithm=granet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    # knn: +1, -1 -> mean 0, std sqrt(2); linear: +0.5, +1.5 -> mean 1, std sqrt(0.5)
    assert out[0].startswith("knn    a − b = +0.00 ± 1.41 (n = 2; seed 0: +1.00, seed 1: -1.00)")
    assert out[1].startswith("linear a − b = +1.00 ± 0.71 (n = 2;")


def test_an_ambiguous_side_or_an_unknown_column_is_an_error(tmp_path, capsys):
    path = write_csv(
        tmp_path / "r.csv",
        [
            run("synccp", 0, "0.1", 70.0, 80.0),
            run("synccp", 0, "0.2", 1.0, 1.0),
            run("granet", 0, "", 69.0, 79.5),
        ],
    )
    with pytest.raises(SystemExit, match="matches two runs of seed 0"):
        paired.main([str(path), "--a", "algorithm=synccp", "--b", "algorithm=granet"])
    with pytest.raises(SystemExit):
        paired.main([str(path), "--a", "colour=red", "--b", "algorithm=granet"])
    assert "colour=red" in capsys.readouterr().err


def test_pairs_whose_runs_ran_on_two_machines_are_named(tmp_path, capsys):
    old, new = "AMD EPYC (SIMD level not recorded)", "AMD EPYC (AVX512)"
    rows = [("dense", 0, 83.0, 85.0, old), ("dense", 1, 82.0, 84.0, old),
            ("gmp", 0, 82.5, 85.5, old), ("gmp", 1, 81.0, 83.0, new), ("gmp", 2, 80.0, 80.0, new)]
    keys = ("algorithm", "seed", "knn_top1", "linear_top1", "machine")
    records = [{"run": f"r{i}", **dict(zip(keys, row, strict=True))} for i, row in enumerate(rows)]
    path = write_csv(tmp_path / "results.csv", records)
    assert paired.main([str(path), "--a", "algorithm=gmp", "--b", "algorithm=dense"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "knn    a − b = -0.75 ± 0.35 (n = 2; seed 0: -0.50, seed 1: -1.00)"
    assert out[1] == "linear a − b = -0.25 ± 1.06 (n = 2; seed 0: +0.50, seed 1: -1.00)"
    assert out[2] == f"machines differ for seed 1 (a: {new}, b: {old})" and len(out) == 3
