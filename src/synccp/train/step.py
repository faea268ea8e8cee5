"""One optimizer step of pretraining, top to bottom: the one place the step order is written.

views → forward → backward → mask gradients → optimizer step → mask update → EMA target and
re-mask → method bookkeeping (DESIGN.md §2). Masks never change between a forward and its
backward. Under torchrun DistributedDataParallel averages the gradients inside `backward`, so
everything after it is computed from identical inputs on every rank; for that reason gradients
are masked here, after backward, and not by the Sparsifier's hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from synccp.train.setup import TrainingSetup

Encode = Callable[[torch.Tensor], torch.Tensor]


def train_step(setup: TrainingSetup, step: int) -> tuple[torch.Tensor, dict | None]:
    """Optimizer step `step` (0-based; the Sparsifier counts it as step + 1). Returns the loss
    (on the device, no host sync) and the metrics record of a mask update (None without one)."""
    # (B_local, C, S, S) each
    view_a, view_b = (setup.runtime.layout(v) for v in setup.batches.views(step))
    for group in setup.optimizer.param_groups:
        group["lr"] = setup.schedules.lr(step)
    online, second = encoders(setup)
    with setup.runtime.autocast():
        # the method's training_loss
        loss = setup.model(view_a, view_b, online=online, second=second)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    setup.sparsifier.capture_(step + 1)  # RigL/GraNet: |dense gradient| on update steps
    setup.sparsifier.mask_gradients_()
    setup.optimizer.step()
    record = setup.sparsifier.update_(step + 1, setup.optimizer)
    if not setup.method.shared_encoder:
        tau = setup.schedules.tau(step)
        setup.method.update_target(tau)
        setup.sparsifier.remask_second_(tau)
    setup.method.after_step()  # MoCo: enqueue this step's keys
    return loss.detach(), record


def encoders(setup: TrainingSetup) -> tuple[Encode, Encode]:
    """(online, second) feature callables for this step (DESIGN.md §1).

    Shared encoder: both run θ, each through its own mask (`Sparsifier.encoder`; SDCLR's pruned
    branch with its own BatchNorm). Momentum: the online backbone, and the EMA target under
    no_grad (its weights are already re-masked)."""
    method, sparsifier = setup.method, setup.sparsifier
    if method.shared_encoder:
        norms = method.branch_norm_tensors()  # SDCLR: the pruned branch's own BatchNorm
        return tuple(sparsifier.encoder(branch, method.backbone,
                                        extra=norms if branch == setup.norm_branch else None)
                     for branch in ("online", "second"))
    target = sparsifier.encoder("second", method.target_backbone)

    def second(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return target(x)

    return method.backbone, second
