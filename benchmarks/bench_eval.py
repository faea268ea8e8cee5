"""Evaluation speed: feature extraction before/after the fast path, and the kNN probe full vs quick.

*before* is the feature extraction of synccp 0.1.0 (kept verbatim below: `torch.no_grad`, batches
of 512, contiguous activations, BatchNorm as separate ops); *after* is
`synccp.eval.features.extract_features` (inference mode, BN folded into the convs, channels_last,
batches of `eval.batch_size`). Both run interleaved on the same images and weights (a ResNet-18
at `--width`, CIFAR stem, 90% unstructured static masks: dense kernels, so sparsity does not
change the time); warm-up excluded; medians of `--repeats`. The kNN probe is timed on random
(N, D) features at the full Fashion-MNIST protocol (60,000 train × 10,000 test) and at
`eval.subset` = `--subset`.

    .venv/bin/python benchmarks/bench_eval.py                 # CPU, real Fashion-MNIST if present
    .venv/bin/python benchmarks/bench_eval.py --device cuda --images 20000
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from synccp.data.views import eval_transform
from synccp.eval.features import extract_features
from synccp.eval.knn import knn_accuracy
from synccp.models import build_backbone
from synccp.study import machine_name


@torch.no_grad()
def extract_features_before(
    backbone, images, *, image_size, mean, std, batch_size=512, device="cpu", bf16=False
):
    """synccp 0.1.0's extract_features, unchanged (the baseline of this benchmark)."""
    device = torch.device(device)
    was_training = backbone.training
    backbone.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    layout = torch.channels_last if bf16 else torch.contiguous_format
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        x = eval_transform(batch, image_size=image_size, mean=mean, std=std)
        with autocast:
            chunks.append(backbone(x.contiguous(memory_format=layout)).float().cpu())
    backbone.train(was_training)
    return torch.cat(chunks)



def images_for(count: int) -> tuple[torch.Tensor, str]:
    try:
        from synccp.data import load_dataset

        data = load_dataset("fashion_mnist", "train")
        return data.images[:count], "Fashion-MNIST train (28x28x1)"
    except Exception:  # no dataset here: the same shape, synthetic
        generator = torch.Generator().manual_seed(0)
        return torch.randint(
            0, 256, (count, 1, 28, 28), dtype=torch.uint8, generator=generator
        ), "synthetic uint8 28x28x1"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast in both (the run's precision)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, source = images_for(args.images)
    model = (
        build_backbone("resnet18", stem="cifar", width=args.width, in_channels=1)
        .to(args.device)
        .eval()
    )
    kwargs = dict(image_size=28, mean=(0.286,), std=(0.353,), device=args.device, bf16=args.bf16)
    before = lambda: extract_features_before(model, images, **kwargs)  # noqa: E731
    after = lambda: extract_features(model, images, **kwargs)  # noqa: E731
    drift = (before() - after()).abs().max().item()
    t_before, t_after = [], []
    for _ in range(args.repeats):  # interleaved
        t_before.append(timed(before, 1))
        t_after.append(timed(after, 1))
    b, a = statistics.median(t_before), statistics.median(t_after)
    print(
        f"machine: {machine_name()}, {args.threads} threads, torch {torch.__version__}, device "
        f"{args.device}"
    )
    print(
        f"features: {len(images)} images ({source}), ResNet-18 width {args.width}, "
        f"{'bf16' if args.bf16 else 'fp32'}, median of {args.repeats}"
    )
    print(
        f"  before {b:.2f} s ({len(images) / b:.0f} img/s)   after {a:.2f} s "
        f"({len(images) / a:.0f} img/s)"
        f"   speedup {b / a:.2f}x   max |before - after| {drift:.2e}"
    )
    knn_figures(model.out_dim, a / len(images), args.subset)


def knn_figures(dim: int, per_image: float, subset: int) -> None:
    """kNN probe time on random features, full protocol vs `eval.subset`, and the kNN-only eval
    totals estimated with the measured per-image feature time."""
    rows = {}
    for label, (n_train, n_test) in (
        ("full", (60000, 10000)),
        ("quick", (subset, min(subset, 10000))),
    ):
        train, test = torch.randn(n_train, dim), torch.randn(n_test, dim)
        train_y, test_y = torch.randint(0, 10, (n_train,)), torch.randint(0, 10, (n_test,))
        rows[label] = (
            timed(
                lambda train=train, train_y=train_y, test=test, test_y=test_y: knn_accuracy(
                    train, train_y, test, test_y, num_classes=10
                ),
                1,
            ),
            n_train + n_test,
        )
    (full, full_images), (quick, quick_images) = rows["full"], rows["quick"]
    print(
        f"kNN probe (k=200, D={dim}): full 60000x10000 {full:.2f} s, eval.subset={subset} "
        f"{quick:.2f} s ({full / quick:.1f}x)"
    )
    print(
        f"kNN-only eval, features (after) + kNN: full {full_images * per_image + full:.1f} s, "
        f"eval.subset={subset} {quick_images * per_image + quick:.1f} s "
        f"(estimated from the per-image feature time above)"
    )


if __name__ == "__main__":
    main()
