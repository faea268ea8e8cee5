"""Probe-accuracy differences paired by seed between two sets of runs of a `synccp report` CSV.

    .venv/bin/python tools/paired.py docs/results/cpu_study/results.csv \
        --where method=simclr granularity=unstructured density=0.1 train.precision=auto \
        --a algorithm=synccp --b algorithm=granet

Prints a − b of the kNN and linear probes for every seed present on both sides, then their mean ±
sample std. Runs of one seed share initial weights, data order and augmentations, so a paired
difference has a far smaller spread than the difference of two means (docs/results.md). A
filter `key=value` compares a CSV column (numbers as numbers); each side must match at most one
run per seed. Pairs whose two runs ran on different machines (the report's `machine` column) are
named: runs of one seed on two machines part from the first optimizer step.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from synccp.results.tables import mean_std


def matches(row: dict, filters: list[str]) -> bool:
    for item in filters:
        key, _, want = item.partition("=")
        have = row[key]
        try:
            if float(have) != float(want):
                return False
        except ValueError:
            if have != want:
                return False
    return True


def by_seed(rows: list[dict], filters: list[str], side: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for row in rows:
        if matches(row, filters):
            seed = int(row["seed"])
            if seed in out:
                sys.exit(f"paired: --{side} {' '.join(filters)} matches two runs of seed {seed} "
                         f"({out[seed]['run']}, {row['run']}); add a filter that tells them apart")
            out[seed] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument(
        "--where", nargs="*", default=[], metavar="KEY=VALUE", help="filters of both sides"
    )
    parser.add_argument("--a", nargs="+", required=True, metavar="KEY=VALUE")
    parser.add_argument("--b", nargs="+", required=True, metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    with args.csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for item in (*args.where, *args.a, *args.b):
        key, eq, _ = item.partition("=")
        if not eq or key not in rows[0]:
            parser.error(f"filter {item!r}: expected KEY=VALUE with KEY a column of {args.csv}")
    a = by_seed(rows, [*args.where, *args.a], "a")
    b = by_seed(rows, [*args.where, *args.b], "b")
    seeds = sorted(set(a) & set(b))
    if not seeds:
        sys.exit(
            f"paired: no seed has a run on both sides (a: seeds {sorted(a)}, b: seeds {sorted(b)})"
        )
    for probe in ("knn", "linear"):
        diffs = [float(a[s][f"{probe}_top1"]) - float(b[s][f"{probe}_top1"]) for s in seeds]
        mean, std, n = mean_std(diffs)
        per_seed = ", ".join(f"seed {s}: {d:+.2f}" for s, d in zip(seeds, diffs, strict=True))
        print(f"{probe:6s} a − b = {mean:+.2f} ± {std:.2f} (n = {n}; {per_seed})")
    apart = [s for s in seeds if a[s].get("machine", "") != b[s].get("machine", "")]
    if apart:  # a run is exact per CPU and SIMD level: such a pair also differs by its machines
        print("machines differ for seed " + ", ".join(
            f"{s} (a: {a[s]['machine'] or '?'}, b: {b[s]['machine'] or '?'})" for s in apart))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
