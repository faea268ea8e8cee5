"""Linear probe on cached frozen features; reports the accuracy after the *final* epoch.

Features are standardized with the training-set mean and std, then a single linear layer is
trained with SGD (momentum 0.9, no weight decay, cosine learning rate) and cross-entropy, as in
solo-learn's linear evaluation but on cached features (no augmentation), which makes it cheap
enough to run after every pretraining.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor,
                 test_features: torch.Tensor, test_labels: torch.Tensor, *, num_classes: int,
                 epochs: int = 100, lr: float = 0.1, batch_size: int = 512,
                 seed: int = 0) -> dict[str, float]:
    """Train a linear classifier on (N, D) features; return final-epoch train and test top-1 (%)."""
    mean = train_features.mean(0, keepdim=True)
    std = train_features.std(0, keepdim=True).clamp_min(1e-6)
    train_x = (train_features - mean) / std  # (N, D)
    test_x = (test_features - mean) / std  # (M, D)
    generator = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    total = epochs * steps_per_epoch
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(train_x), generator=generator)
        idx = order[(step % steps_per_epoch) * batch_size:][:batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
        loss = F.cross_entropy(layer(train_x[idx]), train_labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_acc = (layer(train_x).argmax(1) == train_labels).float().mean().item()
        test_acc = (layer(test_x).argmax(1) == test_labels).float().mean().item()
    return {"train_top1": 100.0 * train_acc, "test_top1": 100.0 * test_acc}
