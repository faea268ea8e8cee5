"""Supervised training with GMP to 90% sparsity in a plain PyTorch loop (no synccp trainer).

A small CNN + MLP (not a ResNet) on Fashion-MNIST. The Sparsifier prunes every Conv/Linear
weight except the stem (first conv) and the classifier (last Linear), following Zhu & Gupta's
cubic ramp from dense to `density` over the first 75% of the steps; `sparsifier.step()` after
`optimizer.step()` is the only line the loop gains.

    python examples/supervised_gmp.py --root /usr/share/datasets/fashion-mnist --steps 2000
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import synccp
from synccp.data import load_dataset


def small_cnn(channels: int = 1, classes: int = 10) -> nn.Module:
    """Conv stem → two convs → MLP → classifier; pooled to 4×4, so any input size ≥ 8 works."""
    return nn.Sequential(
        nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),  # the stem: left dense
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(32 * 16, 128), nn.ReLU(),  # the MLP: pruned
        nn.Linear(128, classes))  # the classifier head: left dense


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def train(root: str | None = None, *, steps: int = 2000, batch_size: int = 128,
          density: float = 0.1, optimizer: str = "sgd",
          seed: int = 0) -> tuple[nn.Module, synccp.Sparsifier, float]:
    """Train and return (model, sparsifier, last loss)."""
    torch.manual_seed(seed)
    data = load_dataset("fashion_mnist", "train", root=root)
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    images = (data.images.float() / 255 - mean) / std  # (N, 1, 28, 28)
    model = small_cnn(images.shape[1], data.num_classes)
    opt = make_optimizer(optimizer, model)
    sparsifier = synccp.Sparsifier(model, optimizer=opt, algorithm="gmp", density=density,
                                   total_steps=steps, update_every=max(1, steps // 40))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        loss = nn.functional.cross_entropy(model(images[index]), data.labels[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sparsifier.step()  # masks on schedule; pruned weights stay exactly zero
    return model, sparsifier, float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="Fashion-MNIST folder (default: SYNCCP_DATA)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    args = parser.parse_args()
    _, sparsifier, loss = train(args.root, steps=args.steps, optimizer=args.optimizer)
    print(f"loss {loss:.3f}, density {sparsifier.summary()['online']['total']:.3f}")


if __name__ == "__main__":
    main()
