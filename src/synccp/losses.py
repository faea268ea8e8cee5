"""Self-supervised losses as pure functions of tensors.

Stop-gradients are part of each loss's definition and applied here (`detach`), so a method cannot
forget them: targets `k`, `queue` (InfoNCE) and `z` (BYOL, SimSiam) never receive gradient.
Every loss is computed in at least float32, with autocast off: half-precision inputs (bf16/fp16
from a mixed-precision forward) are upcast first, so logits and correlations are not rounded to
bf16 (7 mantissa bits) before the softmax / the squares.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from synccp.distributed import gather_with_grad, rank

_BN_EPS = 1e-5  # nn.BatchNorm1d's default, as in the Barlow Twins reference code


def _full_precision(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run `loss` with autocast off and its half-precision tensor arguments upcast to float32."""

    @functools.wraps(loss)
    def wrapper(*args, **kwargs) -> Tensor:
        first = next(v for v in (*args, *kwargs.values()) if isinstance(v, Tensor))
        with torch.autocast(device_type=first.device.type, enabled=False):
            args = tuple(_upcast(v) for v in args)
            kwargs = {k: _upcast(v) for k, v in kwargs.items()}
            return loss(*args, **kwargs)

    return wrapper


def _upcast(value):
    if isinstance(value, Tensor) and value.dtype in (torch.float16, torch.bfloat16):
        return value.float()
    return value


@_full_precision
def nt_xent(z_a: Tensor, z_b: Tensor, *, temperature: float) -> Tensor:
    """SimCLR's NT-Xent loss over the 2N views (Chen et al. 2020, eq. 1).

    ℓ(i, j) = −log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ), sim = cosine similarity;
    "The final loss is computed across all positive pairs, both (i, j) and (j, i), in a
    mini-batch" (https://arxiv.org/abs/2002.05709): each of the 2N views is an anchor, its other
    view the positive, the 2N − 2 remaining views the negatives; mean over anchors. Under
    torch.distributed the negatives are the views of every rank (gathered with gradient) and the
    anchors this rank's 2N views.

    z_a, z_b: (N, D) projections of the two views; row i of both comes from the same image.
    """
    n = z_a.shape[0]
    anchors = F.normalize(torch.cat((z_a, z_b)), dim=1)  # (2N, D)
    all_a = gather_with_grad(F.normalize(z_a, dim=1))  # (W·N, D)
    all_b = gather_with_grad(F.normalize(z_b, dim=1))  # (W·N, D)
    total = all_a.shape[0]
    candidates = torch.cat((all_a, all_b))  # (2WN, D): views a of all ranks, then views b
    logits = anchors @ candidates.T / temperature  # (2N, 2WN)
    local = rank() * n + torch.arange(n, device=z_a.device)  # this rank's rows in all_a / all_b
    self_index = torch.cat((local, local + total))  # (2N,)
    positive = torch.cat((local + total, local))  # (2N,)
    rows = torch.arange(2 * n, device=z_a.device)
    logits = logits.index_put((rows, self_index), logits.new_tensor(float("-inf")))
    return F.cross_entropy(logits, positive)


@_full_precision
def info_nce(q: Tensor, k: Tensor, queue: Tensor, *, temperature: float) -> Tensor:
    """InfoNCE with a queue of negatives (MoCo, He et al. 2020, eq. 1; used by MoCo v2).

    L_q = −log exp(q·k₊/τ) / Σ_{i=0..K} exp(q·k_i/τ) (https://arxiv.org/abs/1911.05722): logits
    [q·k₊, q·queue] / τ, cross entropy to index 0, mean over the batch. q, k and the queue are
    L2-normalized here; k and the queue are stop-gradient.
    q, k: (B, D) queries and their positive keys; queue: (K, D) negative keys.
    """
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    queue = F.normalize(queue.detach(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    negative = q @ queue.to(q.dtype).T  # (B, K)
    logits = torch.cat((positive, negative), dim=1) / temperature  # (B, 1 + K)
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


@_full_precision
def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL's normalized MSE 2 − 2·cos(p, sg(z)), mean over the batch (Grill et al. 2020, eq. 2).

    L = ‖q̄ − z̄'‖² = 2 − 2·⟨q, z'⟩ / (‖q‖·‖z'‖) (https://arxiv.org/abs/2006.07733).
    p: (B, D) online predictions; z: (B, D) target projections (stop-gradient).
    """
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


@_full_precision
def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's D(p, z) = −cos(p, stopgrad(z)), mean over the batch (Chen & He 2021, eqs. 1, 3).

    https://arxiv.org/abs/2011.10566. p: (B, D) predictions; z: (B, D) projections (stop-grad).
    """
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


@_full_precision
def barlow_twins(z_a: Tensor, z_b: Tensor, *, lambda_offdiag: float, scale: float) -> Tensor:
    """Barlow Twins' redundancy-reduction loss (Zbontar et al. 2021, eqs. 1–2).

    L_BT = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij², C the cross-correlation of the two views'
    embeddings standardized over the batch (https://arxiv.org/abs/2103.03230), times `scale`
    (solo-learn's `scale_loss`, a plain multiplier). Standardization as the authors' code
    (BatchNorm without affine: biased variance, eps 1e-5) over the global batch: under DDP every
    rank gathers all ranks' embeddings (with gradient) and computes the same loss, so K processes
    train exactly like one process on the whole batch (the authors all-reduce C instead; same
    value). z_a, z_b: (N, D) on each rank.
    """
    z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)  # (W·N, D); no-op in one process
    on_diag, off_diag = correlation_terms(cross_correlation(z_a, z_b))
    return scale * (on_diag + lambda_offdiag * off_diag)


def cross_correlation(z_a: Tensor, z_b: Tensor) -> Tensor:
    """Barlow Twins' C: (N, D), (N, D) → (D, D), the embeddings standardized over the batch
    (`_standardize`), C_ij = Σ_n a_ni b_nj / N. Of the given rows only (no gathering)."""
    return _standardize(z_a).T @ _standardize(z_b) / z_a.shape[0]


def correlation_terms(c: Tensor) -> tuple[Tensor, Tensor]:
    """Barlow Twins' two unscaled terms of C (D, D): Σ_i (1 − C_ii)² (invariance) and
    Σ_{i≠j} C_ij² (redundancy reduction)."""
    diagonal = torch.diagonal(c)
    return (1.0 - diagonal).pow(2).sum(), c.pow(2).sum() - diagonal.pow(2).sum()


def _standardize(z: Tensor) -> Tensor:
    """Per-feature (z − mean) / sqrt(var + eps) over the batch (biased var): (N, D) → (N, D)."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + _BN_EPS)
