"""LARS against its formula; bias/norm parameters excluded; warmup-cosine endpoints."""

import math

import torch
from torch import nn

from synccp.train.optim import LARS, build_optimizer, parameter_groups
from synccp.train.schedules import scaled_lr, warmup_cosine


def test_parameter_groups_exclude_biases_and_norms():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, exclude = parameter_groups([net], weight_decay=0.1)
    assert {p.ndim for p in decay["params"]} == {2, 4}
    assert all(p.ndim == 1 for p in exclude["params"]) and len(exclude["params"]) == 4
    assert exclude["weight_decay"] == 0.0 and exclude["lars_exclude"]


def _solo_learn_lars(w, g, buf, *, lr, wd, eta, momentum, eps=1e-8, exclude=False):
    """An independent transcription of solo-learn's `LARS.step` (solo/utils/lars.py) for one
    parameter: the trust ratio on the raw gradient, clip_lr, exclude_bias_n_norm."""
    d_p = g
    if not exclude:
        p_norm, g_norm = float(w.norm()), float(g.norm())
        if p_norm != 0 and g_norm != 0:
            lars_lr = eta * p_norm / (g_norm + p_norm * wd + eps)
            lars_lr = min(lars_lr / lr, 1.0)
            d_p = (g + wd * w) * lars_lr
    buf = d_p.clone() if buf is None else momentum * buf + d_p
    return w - lr * buf, buf


def test_lars_step_matches_solo_learn():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    b = nn.Parameter(torch.randn(5, dtype=torch.float64))
    gw, gb = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    rw, rb, buf_w, buf_b = w.detach().clone(), b.detach().clone(), None, None
    for lr in (0.4, 0.01, 0.0005):  # clipped (trust < lr) at large lr, unclipped at small lr
        opt = LARS(
            [
                {"params": [w], "weight_decay": 1e-4, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True},
            ],
            lr=lr,
            momentum=0.9,
            eta=0.02,
        )
        if buf_w is not None:
            opt.state[w]["momentum_buffer"] = buf_w.clone()
            opt.state[b]["momentum_buffer"] = buf_b.clone()
        for _ in range(3):
            w.grad, b.grad = gw.clone(), gb.clone()
            opt.step()
            rw, buf_w = _solo_learn_lars(rw, gw, buf_w, lr=lr, wd=1e-4, eta=0.02, momentum=0.9)
            rb, buf_b = _solo_learn_lars(
                rb, gb, buf_b, lr=lr, wd=0.0, eta=0.02, momentum=0.9, exclude=True
            )
        torch.testing.assert_close(w.detach(), rw)
        torch.testing.assert_close(b.detach(), rb)


def test_lars_trust_ratio_uses_the_raw_gradient_and_clips():
    """At SimCLR's lr 0.4 the old ‖g + λw‖ form without clipping took a 2.5× smaller step on
    weights whose trust ratio exceeds the lr; solo-learn's clipped form steps min(trust, lr)."""
    w = nn.Parameter(torch.full((10,), 1.0, dtype=torch.float64).reshape(2, 5))
    w.grad = torch.full((2, 5), 1e-3, dtype=torch.float64)
    LARS(
        [{"params": [w], "weight_decay": 0.0, "lars_exclude": False}],
        lr=0.4,
        momentum=0.0,
        eta=0.02,
    ).step()
    # trust = 0.02·‖w‖/‖g‖ = 20 ≫ lr, so local = 1: a plain SGD step of lr·g
    torch.testing.assert_close(w.detach(), torch.full((2, 5), 1.0 - 0.4e-3, dtype=torch.float64))


def test_lars_trust_ratio_is_one_for_zero_weights():
    w = nn.Parameter(torch.zeros(4, 4))
    w.grad = torch.ones(4, 4)
    LARS([w], lr=1.0, momentum=0.0, eta=0.02).step()
    torch.testing.assert_close(w.detach(), -torch.ones(4, 4))


def test_build_optimizer_sgd_and_lars():
    net = nn.Linear(3, 2)
    assert isinstance(
        build_optimizer("sgd", [net], lr=0.1, momentum=0.9, weight_decay=1e-4, eta=0.02),
        torch.optim.SGD,
    )
    assert isinstance(
        build_optimizer("lars", [net], lr=0.1, momentum=0.9, weight_decay=1e-4, eta=0.02), LARS
    )


def test_warmup_cosine_endpoints_and_monotone_decay():
    kw = dict(total_steps=100, warmup_steps=10, base=1.0, final=0.1)
    assert warmup_cosine(0, **kw) == 0.0
    assert math.isclose(warmup_cosine(10, **kw), 1.0)
    assert math.isclose(warmup_cosine(100, **kw), 0.1)
    values = [warmup_cosine(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert scaled_lr(1.0, 512) == 2.0
