"""Each loss against an independent, loop-by-loop float64 implementation of the paper's formula."""

import math
from pathlib import Path

import pytest
import torch

from synccp import distributed
from synccp.losses import barlow_twins, byol_loss, info_nce, negative_cosine, nt_xent


def _cos(u, v):
    return float(u @ v) / math.sqrt(float(u @ u) * float(v @ v))


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference_nt_xent(z_a, z_b, temperature):
    """SimCLR eq. 1: every one of the 2N views is an anchor; −log softmax over the 2N − 1 others."""
    views = list(z_a) + list(z_b)
    n = len(z_a)
    total = 0.0
    for i, anchor in enumerate(views):
        positive = (i + n) % (2 * n)
        numerator = math.exp(_cos(anchor, views[positive]) / temperature)
        denominator = sum(math.exp(_cos(anchor, views[k]) / temperature)
                          for k in range(2 * n) if k != i)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0])
def test_nt_xent_matches_reference(temperature):
    z_a, z_b = _randn(6, 5, seed=0), _randn(6, 5, seed=1)
    got = nt_xent(z_a, z_b, temperature=temperature)
    assert got.item() == pytest.approx(reference_nt_xent(z_a, z_b, temperature), rel=1e-10)


def test_nt_xent_is_symmetric_and_low_for_aligned_views():
    z_a, z_b = _randn(8, 4, seed=2), _randn(8, 4, seed=3)
    assert nt_xent(z_a, z_b, temperature=0.3).item() == pytest.approx(
        nt_xent(z_b, z_a, temperature=0.3).item(), rel=1e-12)
    # identical views: positives have cosine 1, so the loss is below the random-pair loss
    assert nt_xent(z_a, z_a, temperature=0.3) < nt_xent(z_a, z_b, temperature=0.3)


def test_nt_xent_gradient_reaches_both_views():
    z_a, z_b = _randn(4, 3, seed=4).requires_grad_(), _randn(4, 3, seed=5).requires_grad_()
    nt_xent(z_a, z_b, temperature=0.2).backward()
    assert z_a.grad.abs().sum() > 0 and z_b.grad.abs().sum() > 0


def reference_info_nce(q, k, queue, temperature):
    """MoCo eq. 1 per query: −log exp(q·k+/τ) / (exp(q·k+/τ) + Σ_j exp(q·queue_j/τ)), normalized."""
    total = 0.0
    for qi, ki in zip(q, k, strict=True):
        qi = qi / qi.norm()
        positive = math.exp(float(qi @ (ki / ki.norm())) / temperature)
        negatives = sum(math.exp(float(qi @ (kj / kj.norm())) / temperature) for kj in queue)
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


def test_info_nce_matches_reference_and_stops_gradient_to_keys_and_queue():
    q = _randn(5, 4, seed=6).requires_grad_()
    k = _randn(5, 4, seed=7).requires_grad_()
    queue = _randn(9, 4, seed=8).requires_grad_()
    got = info_nce(q, k, queue, temperature=0.2)
    expected = reference_info_nce(q.detach(), k.detach(), queue.detach(), 0.2)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got.backward()
    assert q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None


def test_byol_loss_is_normalized_mse_and_stops_gradient_to_target():
    p = _randn(6, 5, seed=9).requires_grad_()
    z = _randn(6, 5, seed=10).requires_grad_()
    expected = sum(2 - 2 * _cos(pi, zi) for pi, zi in zip(p.detach(), z.detach(), strict=True)) / 6
    # eq. 2: the same number as the MSE of the L2-normalized vectors
    mse = sum(float(((pi / pi.norm() - zi / zi.norm()) ** 2).sum())
              for pi, zi in zip(p.detach(), z.detach(), strict=True)) / 6
    got = byol_loss(p, z)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert got.item() == pytest.approx(mse, rel=1e-10)
    got.backward()
    assert p.grad.abs().sum() > 0 and z.grad is None


def test_negative_cosine_matches_reference_and_stops_gradient():
    p = _randn(7, 3, seed=11).requires_grad_()
    z = _randn(7, 3, seed=12).requires_grad_()
    expected = -sum(_cos(pi, zi) for pi, zi in zip(p.detach(), z.detach(), strict=True)) / 7
    got = negative_cosine(p, z)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got.backward()
    assert p.grad.abs().sum() > 0 and z.grad is None
    assert negative_cosine(z, z).item() == pytest.approx(-1.0)


def reference_barlow(z_a, z_b, lambda_offdiag, scale):
    """Barlow Twins eq. 2 written out: C_ij = Σ_b a_bi·b_bj / (sqrt(Σ_b a_bi²)·sqrt(Σ_b b_bj²))
    on mean-centered embeddings, then eq. 1."""
    a = z_a - z_a.mean(0)
    b = z_b - z_b.mean(0)
    n, d = a.shape
    loss = 0.0
    for i in range(d):
        for j in range(d):
            num = sum(float(a[s, i] * b[s, j]) for s in range(n))
            den = math.sqrt(sum(float(a[s, i]) ** 2 for s in range(n))) * \
                math.sqrt(sum(float(b[s, j]) ** 2 for s in range(n)))
            c = num / den
            loss += (1 - c) ** 2 if i == j else lambda_offdiag * c ** 2
    return scale * loss


def test_barlow_twins_matches_reference():
    z_a, z_b = _randn(10, 6, seed=13), _randn(10, 6, seed=14)
    got = barlow_twins(z_a, z_b, lambda_offdiag=0.0051, scale=0.1)
    # BN eps (1e-5) is the only difference from the exact formula
    assert got.item() == pytest.approx(reference_barlow(z_a, z_b, 0.0051, 0.1), rel=1e-4)


def test_barlow_twins_invariant_to_feature_affine_maps_and_zero_at_identity_correlation():
    z_a, z_b = _randn(16, 4, seed=15), _randn(16, 4, seed=16)
    scale, shift = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64), _randn(4, seed=17)
    base = barlow_twins(z_a, z_b, lambda_offdiag=0.01, scale=1.0)
    moved = barlow_twins(z_a * scale + shift, z_b, lambda_offdiag=0.01, scale=1.0)
    assert moved.item() == pytest.approx(base.item(), rel=1e-4)
    # orthogonal, centered columns of equal norm: C = I exactly (up to eps)
    q, _ = torch.linalg.qr(_randn(8, 4, seed=18))  # (8, 4), orthonormal columns
    centered = torch.cat((q, -q)) * 4  # mean zero, columns orthogonal
    assert barlow_twins(centered, centered, lambda_offdiag=0.01, scale=1.0).item() < 1e-8


def test_losses_run_in_float32_under_autocast():
    a, b = _randn(6, 5, seed=21).float(), _randn(6, 5, seed=22).float()
    queue = _randn(7, 5, seed=23).float()
    calls = {
        "nt_xent": lambda x, y: nt_xent(x, y, temperature=0.2),
        "info_nce": lambda x, y: info_nce(x, y, queue, temperature=0.2),
        "byol": byol_loss, "simsiam": negative_cosine,
        "barlow": lambda x, y: barlow_twins(x, y, lambda_offdiag=0.0051, scale=0.1),
    }
    for name, loss in calls.items():
        half_a, half_b = a.bfloat16(), b.bfloat16()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = loss(half_a, half_b)
        assert got.dtype == torch.float32, name
        # exactly the float32 loss of the (rounded) inputs: nothing inside was computed in bf16
        assert got.item() == loss(half_a.float(), half_b.float()).item(), name


# ---- NT-Xent and Barlow Twins across ranks: exactly the single-process loss and gradient ----

DISTRIBUTED_LOSSES = {  # name -> loss of the local slices (each gathers the other ranks')
    "nt_xent": lambda a, b: nt_xent(a, b, temperature=0.5),
    "barlow": lambda a, b: barlow_twins(a, b, lambda_offdiag=0.0051, scale=0.1),
}


def _distributed_worker(rank, world, init_file, name, z_a, z_b, out):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world)
    try:
        n = z_a.shape[0] // world
        a = z_a[rank * n:(rank + 1) * n].clone().requires_grad_()
        b = z_b[rank * n:(rank + 1) * n].clone().requires_grad_()
        loss = DISTRIBUTED_LOSSES[name](a, b)
        loss.backward()
        gathered = distributed.gather(a.detach())
        torch.save({"loss": loss.detach(), "grad_a": a.grad, "grad_b": b.grad,
                    "gathered": gathered, "world": distributed.world_size()}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("name", sorted(DISTRIBUTED_LOSSES))
def test_loss_across_two_ranks_matches_single_process(name, tmp_path, monkeypatch):
    world = 2
    # spawned workers re-import this module by its pytest name: make that importable for them
    root = Path(__file__).resolve().parents[__name__.count(".")]
    monkeypatch.syspath_prepend(str(root))
    z_a, z_b = _randn(6, 4, seed=19), _randn(6, 4, seed=20)
    torch.multiprocessing.spawn(_distributed_worker, nprocs=world, join=True,
                                args=(world, tmp_path / "init", name, z_a, z_b, tmp_path / "out"))
    full_a, full_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    full = DISTRIBUTED_LOSSES[name](full_a, full_b)
    full.backward()
    results = [torch.load(tmp_path / f"out.{r}") for r in range(world)]
    assert all(r["world"] == world for r in results)
    assert torch.equal(results[0]["gathered"], z_a)
    # DDP averages gradients over ranks: the mean of the rank losses is the global loss ...
    assert sum(r["loss"] for r in results).item() / world == pytest.approx(full.item(), rel=1e-10)
    # ... and each rank's gradient / world is the global gradient of its slice
    n = 6 // world
    for r, result in enumerate(results):
        torch.testing.assert_close(result["grad_a"] / world, full_a.grad[r * n:(r + 1) * n])
        torch.testing.assert_close(result["grad_b"] / world, full_b.grad[r * n:(r + 1) * n])


def test_single_process_helpers_are_identities():
    x = torch.randn(3, 2)
    assert not distributed.is_distributed()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.gather_with_grad(x) is x and distributed.gather(x) is x
