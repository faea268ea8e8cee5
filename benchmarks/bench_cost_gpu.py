"""Measured GPU time next to the cost model's prediction (run it on a machine with a CUDA GPU).

Two measurements, warm-up excluded, median of `--repeats` CUDA-event timings:

1. per prunable layer, the forward GEMM (im2col shape from synccp.cost.gemms) as a bf16
   `F.linear` with a dense weight vs a 2:4 weight converted by
   `torch.sparse.to_sparse_semi_structured` (layers PyTorch cannot convert are reported as
   unsupported), next to the model's predicted forward speedup for 2:4 on the accelerator model;
2. one training step (two views, forward + backward) of the backbone with plain weights vs
   weights multiplied by unstructured masks at `--density` (what a GPU does with masks: no
   speedup expected), next to the model's predicted speedup for that density.

    .venv/bin/python benchmarks/bench_cost_gpu.py --device cuda --backbone resnet18 --width 64 \\
        --image-size 32 --batch 256 --out runs/bench_cost_gpu.json

On a machine without CUDA it exits with status 2 and says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from synccp.cost import structure
from synccp.cost.accelerator import DEFAULT_ACCELERATOR, phase_cost
from synccp.cost.gemms import phase_gemm, training_layers
from synccp.models import build_backbone, prunable_parameters


def cuda_time_ms(fn, *, warmup: int, repeats: int) -> float:
    """Median wall time of `fn()` in ms over `repeats` runs after `warmup` runs (CUDA events)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def mask_24(weight: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest of every 4 consecutive weights along the last dim."""
    groups = weight.reshape(-1, 4).abs()
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(
        1, groups.topk(2, dim=1).indices, True
    )
    return keep.reshape(weight.shape)


def predicted_forward_speedup(layer, batch: int) -> float:
    mask = (
        mask_24(torch.randn(layer.out_features, layer.reduction))
        .reshape(layer.out_features, *layer.weight_shape[2:], layer.weight_shape[1])
        .permute(0, 3, 1, 2)
    )
    state = structure.from_mask(mask.reshape(layer.weight_shape), n=2, m=4)
    kwargs = dict(granularity="nm", n=2, m=4, dense_gradients=False, accel=DEFAULT_ACCELERATOR)
    dense = phase_cost(layer, "forward", batch, None, **kwargs)
    return dense.cycles / phase_cost(layer, "forward", batch, state, **kwargs).cycles


def layer_kernels(args, layers, device) -> list[dict]:
    """Dense vs 2:4 semi-structured forward GEMM of every prunable layer."""
    from torch.sparse import to_sparse_semi_structured

    rows = []
    for layer in (item for item in layers if not item.first):
        gemm = phase_gemm(layer, "forward", args.batch)
        x = torch.randn(gemm.m, gemm.k, device=device, dtype=torch.bfloat16)
        weight = torch.randn(gemm.n, gemm.k, device=device, dtype=torch.bfloat16)
        weight = weight * mask_24(weight)
        row = {
            "layer": layer.name,
            "mnk": [gemm.m, gemm.n, gemm.k],
            "dense_ms": cuda_time_ms(
                lambda x=x, weight=weight: F.linear(x, weight),
                warmup=args.warmup,
                repeats=args.repeats,
            ),
            "predicted_speedup_2to4": predicted_forward_speedup(layer, args.batch),
        }
        try:
            sparse = to_sparse_semi_structured(weight)
            row["sparse_ms"] = cuda_time_ms(
                lambda x=x, sparse=sparse: F.linear(x, sparse),
                warmup=args.warmup,
                repeats=args.repeats,
            )
            row["measured_speedup_2to4"] = row["dense_ms"] / row["sparse_ms"]
        except (RuntimeError, ValueError, NotImplementedError) as err:
            row["unsupported"] = str(err).splitlines()[0][:200]
        rows.append(row)
    return rows


def masked_step(args, device) -> dict:
    """One two-view training step of the backbone, dense weights vs weights ⊙ random masks."""
    backbone = build_backbone(args.backbone, stem=args.stem, width=args.width, in_channels=3).to(
        device
    )
    views = [
        torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
        for _ in range(2)
    ]
    generator = torch.Generator(device).manual_seed(0)
    masks = {
        name: torch.rand(p.shape, device=device, generator=generator) < args.density
        for name, p in prunable_parameters(backbone).items()
    }
    params = dict(backbone.named_parameters())

    def step(masked: bool) -> None:
        weights = {n: p * masks[n] if masked and n in masks else p for n, p in params.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = sum(
                torch.func.functional_call(backbone, weights, (v,)).float().square().mean()
                for v in views
            )
        loss.backward()

    dense = cuda_time_ms(lambda: step(False), warmup=args.warmup, repeats=args.repeats)
    masked = cuda_time_ms(lambda: step(True), warmup=args.warmup, repeats=args.repeats)
    return {
        "dense_ms": dense,
        "masked_ms": masked,
        "measured_speedup": dense / masked,
        "density": args.density,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--stem", default="cifar")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.device != "cuda" or not torch.cuda.is_available():
        print(
            f"bench_cost_gpu measures CUDA kernels: run it with --device cuda on a machine with a "
            f"CUDA GPU (got --device {args.device}, torch.cuda.is_available()="
            f"{torch.cuda.is_available()})",
            file=sys.stderr,
        )
        sys.exit(2)
    device = torch.device("cuda")
    backbone = build_backbone(args.backbone, stem=args.stem, width=args.width, in_channels=3)
    layers = training_layers(backbone, in_channels=3, image_size=args.image_size)
    result = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "args": vars(args) | {"out": str(args.out)},
        "layers_2to4": layer_kernels(args, layers, device),
        "step": masked_step(args, device),
    }
    for row in result["layers_2to4"]:
        measured = row.get("measured_speedup_2to4")
        shown = f"{measured:.2f}x" if measured else f"unsupported ({row['unsupported'][:60]})"
        print(
            f"{row['layer']:<32} {row['mnk']} measured {shown}, model "
            f"{row['predicted_speedup_2to4']:.2f}x"
        )
    print(
        f"step dense {result['step']['dense_ms']:.2f} ms, masked "
        f"{result['step']['masked_ms']:.2f} ms"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
