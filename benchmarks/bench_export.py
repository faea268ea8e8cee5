"""Channel-compact export vs the dense-shaped export: CPU latency, parameters and file size.

A ResNet-18 (CIFAR stem, `--width`, 3x32x32 inputs) gets static channel masks at `--density`
(whole filters zero, as channel sparsity leaves them); BatchNorm statistics are drawn at random,
with the shift β of each BN either of random sign (`--bn-bias random`: a pruned filter whose BN
constant is positive is a constant map and must stay) or negative (every pruned filter is
removable). Both exports are written with synccp's own code (`export_model`, then
`synccp.export.run.export_run(..., "compact")`), loaded back with `synccp.load_encoder`, and timed
interleaved in eval mode under `torch.inference_mode`; warm-up excluded; medians of `--repeats`.

    .venv/bin/python benchmarks/bench_export.py
    .venv/bin/python benchmarks/bench_export.py --density 0.25 --bn-bias negative
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import synccp
from synccp.export.compact import parameter_count
from synccp.export.metadata import encoder_metadata
from synccp.export.run import export_run
from synccp.models import build_backbone, prunable_parameters
from synccp.rundir.artifacts import export_model
from synccp.sparsity.sparsifier import Sparsifier
from synccp.study import machine_name


def channel_sparse(width: int, density: float, bn_bias: str, seed: int = 0):
    torch.manual_seed(seed)
    model = build_backbone("resnet18", stem="cifar", width=width, in_channels=3)
    sparsifier = Sparsifier(
        online=prunable_parameters(model), second=None, algorithm="static", granularity="channel",
        density=density, initial_density=1.0, density_gap=0.0, n=2, m=4, block=(4, 4),
        allocation="uniform", score_ema=0.0, update_every=1, start_step=0, end_step=0,
        steps_per_epoch=1, total_steps=1, drop_fraction=0.3, sparse_branch="second", seed=seed)
    sparsifier.prepare_()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.bias.uniform_(-0.5, 0.5 if bn_bias == "random" else -0.05)
    return model.eval(), sparsifier


def latency(model, x, repeats: int) -> float:
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--density", type=float, default=0.5)
    parser.add_argument("--bn-bias", choices=("random", "negative"), default="random")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, sparsifier = channel_sparse(args.width, args.density, args.bn_bias)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        export_model(
            run,
            model,
            sparsifier,
            encoder=encoder_metadata(
                backbone="resnet18",
                stem="cifar",
                width=args.width,
                in_channels=3,
                out_dim=model.out_dim,
                image_size=32,
                mean=(0.5,) * 3,
                std=(0.25,) * 3,
            ),
        )
        report = export_run(run, "compact")
        dense, compact = (
            synccp.load_encoder(run / "model.safetensors"),
            synccp.load_encoder(report["path"]),
        )
        sizes = ((run / "model.safetensors").stat().st_size, Path(report["path"]).stat().st_size)
    print(
        f"machine: {machine_name()}"
        f", {args.threads} threads, torch {torch.__version__}"
    )
    print(
        f"ResNet-18 width {args.width}, channel density {args.density}, BN shift {args.bn_bias}: "
        f"max |compact - dense| {report['max_abs_diff']:.2e}"
    )
    print(
        f"parameters: dense-shaped {parameter_count(dense):,}  compact "
        f"{parameter_count(compact):,} "
        f"({parameter_count(compact) / parameter_count(dense):.2f}x)"
    )
    print(
        f"file: dense-shaped {sizes[0] / 1e6:.2f} MB  compact {sizes[1] / 1e6:.2f} MB "
        f"({sizes[1] / sizes[0]:.2f}x)"
    )
    for batch in args.batch:
        x = torch.randn(batch, 3, 32, 32)
        runs = [
            (latency(dense, x, 1), latency(compact, x, 1)) for _ in range(args.repeats)
        ]  # interleaved
        d, c = (statistics.median(t) for t in zip(*runs, strict=True))
        print(
            f"batch {batch:3d}: dense-shaped {1e3 * d:8.2f} ms  compact {1e3 * c:8.2f} ms  "
            f"speedup {d / c:.2f}x"
            f"  (median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
