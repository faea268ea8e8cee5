"""MoCo v2 (Chen et al., "Improved Baselines with Momentum Contrastive Learning", 2020,
https://arxiv.org/abs/2003.04297), in solo-learn's symmetric "MoCo-v2+" form.

Defaults: solo-learn's CIFAR recipe, `scripts/pretrain/cifar/mocov2plus.yaml` (vturrisi/solo-learn):
projector 2048 → 256 (Linear-ReLU-Linear, the MoCo v2 MLP head), temperature 0.2, queue 32768
keys per view, τ from 0.99 to 0.999 on the cosine schedule. (MoCo v2 itself: τ fixed at 0.999,
temperature 0.2, a 65536-key queue, one asymmetric loss.) Keep `queue_size` well below the
number of training images: a queue that spans an epoch holds older keys of the query's own image
as negatives.

Like solo-learn, the queue holds one FIFO of keys per view: the query of view a is contrasted
with the key of view b and the queued keys of view b, and vice versa; the loss is the mean of
the two directions. The queue is a buffer (it is in `state_dict` and checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synccp.distributed import gather
from synccp.losses import info_nce
from synccp.methods.base import Encode, MomentumMethod, check_options
from synccp.models.heads import mlp


class MoCoV2(MomentumMethod):
    """InfoNCE of online queries against EMA-target keys plus a queue of past keys."""

    name = "mocov2"
    queue: Tensor  # (2, K, P): normalized keys of view a (row 0) and view b (row 1)
    queue_ptr: Tensor  # (): next slot to overwrite, shared by both views

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 2048,
                 proj_output_dim: int = 256, temperature: float = 0.2, queue_size: int = 32768,
                 base_tau: float = 0.99, final_tau: float = 0.999):
        super().__init__(backbone, base_tau=base_tau, final_tau=final_tau)
        check_options(proj_hidden_dim=proj_hidden_dim, proj_output_dim=proj_output_dim,
                      temperature=temperature, queue_size=queue_size)
        self.temperature = temperature
        self.projector = mlp(self.feature_dim, proj_hidden_dim, proj_output_dim, hidden_bn=False)
        self._make_targets()
        keys = F.normalize(torch.randn(2, queue_size, proj_output_dim), dim=2)  # random start
        self.register_buffer("queue", keys)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending_keys: tuple[Tensor, Tensor] | None = None

    def training_loss(self, view_a: Tensor, view_b: Tensor, *, online: Encode,
                      second: Encode) -> Tensor:
        q_a = self.projector(online(view_a))  # (B, P)
        q_b = self.projector(online(view_b))  # (B, P)
        k_a = F.normalize(self.target_projections(view_a, second), dim=1)  # (B, P), no grad
        k_b = F.normalize(self.target_projections(view_b, second), dim=1)  # (B, P), no grad
        self._pending_keys = (k_a, k_b)
        loss_a = info_nce(q_a, k_b, self.queue[1], temperature=self.temperature)
        loss_b = info_nce(q_b, k_a, self.queue[0], temperature=self.temperature)
        return (loss_a + loss_b) / 2

    @torch.no_grad()
    def after_step(self) -> None:
        """Enqueue the keys of the last `training_loss` call, gathered from every rank."""
        if self._pending_keys is None:
            return
        k_a, k_b = self._pending_keys
        self._pending_keys = None
        self.enqueue(gather(k_a), gather(k_b))

    @torch.no_grad()
    def enqueue(self, keys_a: Tensor, keys_b: Tensor) -> None:
        """Overwrite the oldest slots (FIFO, wrapping around) with (n, P) keys of each view."""
        size = self.queue.shape[1]
        keys = torch.stack((keys_a, keys_b))[:, -size:].to(self.queue.dtype)  # (2, n, P), n <= K
        count = keys.shape[1]
        slots = (self.queue_ptr + torch.arange(count, device=self.queue.device)) % size  # (n,)
        self.queue.index_copy_(1, slots, keys)
        self.queue_ptr.copy_((self.queue_ptr + count) % size)
