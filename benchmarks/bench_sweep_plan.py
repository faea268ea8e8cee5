"""Time of planning a sweep (resolving and validating every cell): with the config's type hints
computed once per class (as synccp does) and recomputed for every cell (as it did before).

A 200 × 10 grid (2000 cells), both variants interleaved, medians of `--repeats`.

    python benchmarks/bench_sweep_plan.py --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import typing
from pathlib import Path

import synccp.config as config
from synccp.grid import load_grid, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    rates = ", ".join(f"{0.001 + i * 1e-7:.7f}" for i in range(200))
    densities = ", ".join(f"{d / 10}" for d in range(1, 11))
    (folder / "g.toml").write_text(f'[sweep]\nseeds = [0]\nout = "{folder}/runs"\n[grid]\n'
                                   f"train.lr = [{rates}]\nsparsity.density = [{densities}]\n")
    grid = load_grid(folder / "g.toml")
    variants = {
        "type hints per cell": typing.get_type_hints,
        "type hints cached": config._type_hints,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    cells = 0
    for _ in range(args.repeats):
        for name, hints in variants.items():
            config._type_hints = hints
            started = time.perf_counter()
            cells = len(plan(grid))
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name}: {cells} cells, median {median:.2f} s ({median / cells * 1e3:.2f} ms per cell)"
        )


if __name__ == "__main__":
    main()
