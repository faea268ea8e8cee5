"""Write a CIFAR-10-shaped dataset in the official "python version" layout, for timing runs.

`ROOT/cifar-10-batches-py/data_batch_1..5` and `test_batch` (pickled dicts with a uint8 `data`
array (N, 3072) and `labels`), as synccp.data.cifar reads them: 50,000 + 10,000 images of
class-dependent stripes plus noise (not CIFAR: only its shape and file format, so a GPU machine
without the real archive can time a CIFAR-sized run).

    python3 benchmarks/make_cifar_like.py /tmp/cifar_like [--train 50000]
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def batch(count: int, rng: np.random.Generator) -> dict:
    labels = rng.integers(0, 10, count)
    yy, xx = np.mgrid[0:32, 0:32]
    base = np.stack(
        [((xx * (c % 3 + 1) + yy * (c // 3 + 1)) * 8) % 256 for c in range(10)]
    )  # (10, 32, 32)
    planes = np.stack([base[labels], base[(labels + 3) % 10], base[(labels + 7) % 10]], axis=1)
    noisy = np.clip(planes + rng.integers(0, 64, planes.shape), 0, 255).astype(np.uint8)
    return {b"data": noisy.reshape(count, 3072), b"labels": labels.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    args = parser.parse_args()
    folder = args.root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per = -(-args.train // 5)
    for i in range(5):
        count = max(min(per, args.train - i * per), 0)
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch(count, rng), protocol=4))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(args.test, rng), protocol=4))
    print(f"wrote {args.train} + {args.test} CIFAR-10-shaped images to {folder}")


if __name__ == "__main__":
    main()
