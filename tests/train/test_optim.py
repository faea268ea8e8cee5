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


def test_lars_step_matches_formula():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    b = nn.Parameter(torch.randn(5, dtype=torch.float64))
    w0, b0 = w.detach().clone(), b.detach().clone()
    gw, gb = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    opt = LARS([{"params": [w], "weight_decay": 0.01, "lars_exclude": False},
                {"params": [b], "weight_decay": 0.0, "lars_exclude": True}], lr=0.5, momentum=0.9, eta=0.02)
    for _ in range(2):
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
    # reference, written out
    buf_w = torch.zeros_like(w0); buf_b = torch.zeros_like(b0); rw, rb = w0.clone(), b0.clone()
    for _ in range(2):
        u = gw + 0.01 * rw
        u = u * (0.02 * rw.norm() / u.norm())
        buf_w = 0.9 * buf_w + u; rw = rw - 0.5 * buf_w
        buf_b = 0.9 * buf_b + gb; rb = rb - 0.5 * buf_b
    torch.testing.assert_close(w.detach(), rw)
    torch.testing.assert_close(b.detach(), rb)


def test_lars_trust_ratio_is_one_for_zero_weights():
    w = nn.Parameter(torch.zeros(4, 4))
    w.grad = torch.ones(4, 4)
    LARS([w], lr=1.0, momentum=0.0, eta=0.02).step()
    torch.testing.assert_close(w.detach(), -torch.ones(4, 4))


def test_build_optimizer_sgd_and_lars():
    net = nn.Linear(3, 2)
    assert isinstance(build_optimizer("sgd", [net], lr=0.1, momentum=0.9, weight_decay=1e-4, eta=0.02), torch.optim.SGD)
    assert isinstance(build_optimizer("lars", [net], lr=0.1, momentum=0.9, weight_decay=1e-4, eta=0.02), LARS)


def test_warmup_cosine_endpoints_and_monotone_decay():
    kw = dict(total_steps=100, warmup_steps=10, base=1.0, final=0.1)
    assert warmup_cosine(0, **kw) == 0.0
    assert math.isclose(warmup_cosine(10, **kw), 1.0)
    assert math.isclose(warmup_cosine(100, **kw), 0.1)
    values = [warmup_cosine(s, **kw) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert scaled_lr(1.0, 512) == 2.0
