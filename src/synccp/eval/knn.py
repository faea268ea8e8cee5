"""Weighted k-nearest-neighbour classifier on L2-normalized features (cosine similarity).

Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination" (CVPR 2018):
each of the k nearest training features votes for its label with weight exp(s/T), s the cosine
similarity. Defaults k = 200, T = 0.1 are theirs and solo-learn's (`solo/utils/knn.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor,
                test_features: torch.Tensor, *, num_classes: int, k: int = 200,
                temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Predicted labels (M,) of `test_features` (M, D) from `train_features` (N, D)."""
    train = F.normalize(train_features, dim=1)  # (N, D)
    k = min(k, len(train))
    predictions = []
    for start in range(0, len(test_features), chunk):
        query = F.normalize(test_features[start:start + chunk], dim=1)  # (B, D)
        sims, idx = (query @ train.T).topk(k, dim=1)  # (B, k)
        weights = (sims / temperature).exp()  # (B, k)
        votes = torch.zeros(len(query), num_classes, dtype=weights.dtype)
        votes.scatter_add_(1, train_labels[idx], weights)  # (B, C)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(train_features, train_labels, test_features, test_labels, *, num_classes: int,
                 k: int = 200, temperature: float = 0.1) -> float:
    """Top-1 accuracy (%) of the weighted kNN classifier."""
    pred = knn_predict(train_features, train_labels, test_features, num_classes=num_classes,
                       k=k, temperature=temperature)
    return 100.0 * (pred == test_labels).float().mean().item()
