"""The SSL methods' contract: defaults, views → callables, gradients, stop-grad, EMA, MoCo queue."""

import pytest
import torch
import torch.nn.functional as F

from synccp.methods import METHODS, build_method, method_defaults
from synccp.models import build_backbone

SHARED = ["simclr", "barlow", "simsiam"]
MOMENTUM = ["byol", "mocov2"]

# solo-learn scripts/pretrain/cifar/{simclr,mocov2plus,byol,barlow,simsiam}.yaml (+ solo-learn's
# default lamb = 0.0051 for Barlow Twins, which its yaml does not set)
SOLO_LEARN_CIFAR = {
    "simclr": dict(proj_hidden_dim=2048, proj_output_dim=256, temperature=0.2),
    "mocov2": dict(proj_hidden_dim=2048, proj_output_dim=256, temperature=0.2, queue_size=32768,
                   base_tau=0.99, final_tau=0.999),
    "byol": dict(proj_hidden_dim=4096, proj_output_dim=256, pred_hidden_dim=4096, base_tau=0.99,
                 final_tau=1.0),
    "barlow": dict(proj_hidden_dim=2048, proj_output_dim=2048, lambda_offdiag=0.0051, scale=0.1),
    "simsiam": dict(proj_hidden_dim=2048, proj_output_dim=2048, pred_hidden_dim=512),
}


def tiny(name, seed=0, **overrides):
    """The method on a width-4 ResNet-18 with 16–32-wide heads."""
    torch.manual_seed(seed)
    backbone = build_backbone("resnet18", stem="cifar", width=4, in_channels=3)
    small = dict(proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=16, queue_size=12)
    kwargs = {k: v for k, v in small.items() if k in method_defaults(name)}
    return build_method(name, backbone, **{**kwargs, **overrides})


def views(batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 16, 16, generator=g), torch.randn(batch, 3, 16, 16, generator=g)


def plain_encoders(method):
    if method.shared_encoder:
        return method.backbone, method.backbone
    return method.backbone, method.target_backbone


def test_defaults_are_solo_learn_cifar_recipes():
    assert set(METHODS) == set(SOLO_LEARN_CIFAR)
    for name, expected in SOLO_LEARN_CIFAR.items():
        assert method_defaults(name) == expected
        assert METHODS[name].shared_encoder == (name in SHARED)


def test_build_method_rejects_unknown_names_and_options():
    backbone = build_backbone("resnet18", stem="cifar", width=4, in_channels=3)
    with pytest.raises(ValueError, match="dino"):
        build_method("dino", backbone)
    with pytest.raises(TypeError, match="queue_size"):
        build_method("simclr", backbone, queue_size=10)
    with pytest.raises(ValueError, match="temperature"):
        build_method("simclr", backbone, temperature=0.0)
    with pytest.raises(ValueError, match="base_tau"):
        build_method("byol", backbone, base_tau=0.999, final_tau=0.99)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_training_loss_is_finite_with_plain_backbones(name):
    method = tiny(name)
    online, second = plain_encoders(method)
    loss = method.training_loss(*views(), online=online, second=second)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in method.backbone.parameters())
    assert all(p.grad is not None for p in method.projector.parameters())


@pytest.mark.parametrize("name", SHARED)
def test_shared_methods_send_view_a_online_view_b_second_with_gradient_through_both(name):
    method = tiny(name)
    assert method.target_backbone is None and method.target_parameters() is None
    view_a, view_b = views()
    gates = {branch: torch.ones((), requires_grad=True) for branch in ("online", "second")}
    seen = {}

    def encoder(branch):
        def encode(x):
            seen[branch] = x
            return method.backbone(x) * gates[branch]
        return encode

    loss = method.training_loss(view_a, view_b, online=encoder("online"), second=encoder("second"))
    assert seen["online"] is view_a and seen["second"] is view_b
    grad_online, grad_second = torch.autograd.grad(loss, [gates["online"], gates["second"]])
    assert grad_online.abs() > 0 and grad_second.abs() > 0
    before = {n: p.clone() for n, p in method.state_dict().items()}
    method.update_target(0.5)
    method.after_step()
    assert all(torch.equal(p, before[n]) for n, p in method.state_dict().items())


@pytest.mark.parametrize("name", MOMENTUM)
def test_momentum_methods_online_gets_both_views_target_only_without_grad(name):
    method = tiny(name)
    view_a, view_b = views()
    online_calls, second_calls = [], []

    def online(x):
        online_calls.append(x)
        return method.backbone(x)

    def second(x):
        second_calls.append((x, torch.is_grad_enabled()))
        return method.target_backbone(x)

    target_before = {n: p.clone() for n, p in method.target_parameters().items()}
    projector_before = [p.clone() for p in method.target_projector.parameters()]
    loss = method.training_loss(view_a, view_b, online=online, second=second)
    # one forward per view (per-view BatchNorm statistics), never a concatenated 2B batch
    assert [x is v for x, v in zip(online_calls, (view_a, view_b), strict=True)] == [True, True]
    both = (view_a, view_b)
    assert [x is v for (x, _), v in zip(second_calls, both, strict=True)] == [True, True]
    assert not any(grad for _, grad in second_calls)
    loss.backward()
    torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1).step()
    assert all(p.grad is None and not p.requires_grad for p in method.target_backbone.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())
    assert all(torch.equal(p, target_before[n]) for n, p in method.target_parameters().items())
    projector_after = list(method.target_projector.parameters())
    assert all(torch.equal(a, b) for a, b in zip(projector_after, projector_before, strict=True))


@pytest.mark.parametrize("name", MOMENTUM)
def test_update_target_is_ema_of_backbone_and_projector(name):
    method = tiny(name)
    assert set(method.target_parameters()) == {n for n, _ in method.backbone.named_parameters()}
    online = dict(method.backbone.named_parameters())
    assert all(torch.equal(p, online[n]) for n, p in method.target_parameters().items())  # ξ0 = θ0
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
        for p in method.projector.parameters():
            p.mul_(3.0)
    xi = {n: p.clone() for n, p in method.target_parameters().items()}
    xi_proj = [p.clone() for p in method.target_projector.parameters()]
    method.update_target(0.75)
    for n, p in method.target_parameters().items():
        torch.testing.assert_close(p, 0.75 * xi[n] + 0.25 * online[n].detach())
    for p, before, theta in zip(
        method.target_projector.parameters(), xi_proj, method.projector.parameters(), strict=True
    ):
        torch.testing.assert_close(p, 0.75 * before + 0.25 * theta.detach())


def test_byol_loss_is_the_symmetrized_paper_loss():
    method = tiny("byol")
    method.eval()  # deterministic BN so the reference can recompute every branch
    view_a, view_b = views()
    online, second = plain_encoders(method)
    loss = method.training_loss(view_a, view_b, online=online, second=second)
    with torch.no_grad():
        p = [method.predictor(method.projector(method.backbone(v))) for v in (view_a, view_b)]
        t = [method.target_projector(method.target_backbone(v)) for v in (view_a, view_b)]
    expected = sum((2 - 2 * F.cosine_similarity(p[i], t[1 - i], dim=1)).mean() for i in (0, 1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mocov2_queue_is_a_buffer_that_enqueues_and_wraps_around():
    method = tiny("mocov2", queue_size=6)
    state = method.state_dict()
    assert state["queue"].shape == (2, 6, 16) and int(state["queue_ptr"]) == 0
    torch.testing.assert_close(method.queue.norm(dim=2), torch.ones(2, 6))
    online, second = plain_encoders(method)
    keys = []
    for step in range(2):
        view_a, view_b = views(batch=4, seed=10 + step)
        queue_before = method.queue.clone()
        method.training_loss(view_a, view_b, online=online, second=second)
        assert torch.equal(method.queue, queue_before)  # the loss never touches the queue
        with torch.no_grad():
            keys.append(
                [F.normalize(method.target_projector(second(v)), dim=1) for v in (view_a, view_b)]
            )
        method.after_step()
    assert int(method.queue_ptr) == (4 + 4) % 6
    for view in (0, 1):
        first, latest = keys[0][view], keys[1][view]
        torch.testing.assert_close(method.queue[view, 0:2], latest[2:4])  # wrapped around
        torch.testing.assert_close(method.queue[view, 2:4], first[2:4])  # survivors of step 1
        torch.testing.assert_close(method.queue[view, 4:6], latest[0:2])
    method.after_step()  # nothing pending: no change
    assert int(method.queue_ptr) == 2
    restored = tiny("mocov2", seed=5, queue_size=6)
    restored.load_state_dict(method.state_dict())
    assert torch.equal(restored.queue, method.queue) and int(restored.queue_ptr) == 2


def test_mocov2_loss_uses_the_other_views_queue():
    method = tiny("mocov2", queue_size=8)
    method.eval()
    view_a, view_b = views()
    online, second = plain_encoders(method)
    loss = method.training_loss(view_a, view_b, online=online, second=second)
    with torch.no_grad():
        q = [F.normalize(method.projector(online(v)), dim=1) for v in (view_a, view_b)]
        k = [F.normalize(method.target_projector(second(v)), dim=1) for v in (view_a, view_b)]
    expected = 0.0
    for i in (0, 1):
        positive = (q[i] * k[1 - i]).sum(1, keepdim=True)  # (B, 1)
        logits = torch.cat((positive, q[i] @ method.queue[1 - i].T), 1)  # (B, 1 + K)
        expected += F.cross_entropy(logits / 0.2, torch.zeros(4, dtype=torch.long)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
