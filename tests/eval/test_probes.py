"""kNN against a brute-force reference; the linear probe separates separable data."""

import torch
import torch.nn.functional as F

from synccp.eval.features import raw_pixel_features
from synccp.eval.knn import knn_predict
from synccp.eval.linear import linear_probe


def _reference_knn(train, labels, test, k, t, classes):
    out = []
    for q in test:
        sims = torch.stack([F.cosine_similarity(q, x, dim=0) for x in train])
        top = sims.topk(k)
        votes = torch.zeros(classes, dtype=torch.float64)
        for s, i in zip(top.values, top.indices, strict=True):
            votes[labels[i]] += torch.exp(s / t)
        out.append(int(votes.argmax()))
    return torch.tensor(out)


def test_knn_matches_bruteforce_reference():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(60, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (60,), generator=g)
    test = torch.randn(20, 8, generator=g, dtype=torch.float64)
    got = knn_predict(train, labels, test, num_classes=4, k=7, temperature=0.1, chunk=6)
    assert torch.equal(got, _reference_knn(train, labels, test, 7, 0.1, 4))


def test_linear_probe_learns_a_separable_problem():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(3, 16, generator=g) * 4
    y = torch.randint(0, 3, (600,), generator=g)
    x = centers[y] + torch.randn(600, 16, generator=g)
    result = linear_probe(
        x[:500], y[:500], x[500:], y[500:], num_classes=3, epochs=10, batch_size=64
    )
    assert result["test_top1"] > 95.0


def test_raw_pixel_features_are_normalized_and_flat():
    images = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    x = raw_pixel_features(images, mean=(0.5,), std=(0.25,))
    assert x.shape == (2, 16) and torch.allclose(x, torch.full_like(x, 2.0))
