"""The training loop: the one place the step order is written (DESIGN.md §2).

augment two views on the device → method forward → backward → capture scores/gradients → mask
gradients → optimizer step → Sparsifier.update (re-masks) → EMA target update and target
re-mask → method bookkeeping (queue) → log. Masks never change between a forward and its backward.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from synccp.config import Config, config_to_dict
from synccp.data.views import make_view
from synccp.models import cosine_tau
from synccp.results import rundir
from synccp.train.checkpoint import load_checkpoint, save_checkpoint
from synccp.train.export import export_model
from synccp.train.schedules import scaled_lr, warmup_cosine
from synccp.train.setup import TrainingSetup, build_setup, resolve_device

LOG = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/Inf; names the step and the last good checkpoint."""


def pretrain(cfg: Config, run_dir: str | Path, *, resume: bool = False,
             stop_after: int | None = None) -> dict:
    """Pretrain per `cfg` into `run_dir`; return the summary. `stop_after` ends this process early
    (after that many optimizer steps in total) as if it had been killed after its last checkpoint."""
    run_dir = Path(run_dir)
    rundir.prepare_run_dir(run_dir, config_to_dict(cfg), resume=resume)
    device = resolve_device(cfg.train.device)
    setup = build_setup(cfg, device)
    log = rundir.MetricsLog(run_dir)
    step = 0
    if resume:
        step = _restore(setup, run_dir, device)
        log.truncate_after(step)
        LOG.info("resumed %s at step %d", run_dir, step)
    else:
        log.write({"kind": "mask_update", "step": 0, "epoch": 0.0, **setup.sparsifier.prepare_()})
    last = setup.clock.total_steps if stop_after is None else min(stop_after, setup.clock.total_steps)
    started = time.perf_counter()
    step = _run_steps(cfg, setup, run_dir, log, first=step, last=last)
    if step < setup.clock.total_steps:
        return {"stopped_at": step}
    return _finish(cfg, setup, run_dir, wall_s=time.perf_counter() - started)


def _run_steps(cfg: Config, setup: TrainingSetup, run_dir: Path, log: rundir.MetricsLog, *,
               first: int, last: int) -> int:
    """Run optimizer steps `first`..`last`-1; checkpoint at every epoch end; return steps done."""
    clock = setup.clock
    bar = tqdm(total=clock.total_steps, initial=first, unit="step", dynamic_ncols=True,
               disable=not cfg.train.progress or None, desc="pretrain")
    window = (time.perf_counter(), first)
    for step in range(first, last):
        loss = _train_step(cfg, setup, step)
        record = setup.sparsifier.update_(step + 1, setup.optimizer)
        if record is not None:
            log.write({"kind": "mask_update", "step": step + 1, "epoch": clock.epoch(step + 1), **record})
        if not setup.method.shared_encoder:
            setup.method.update_target(_tau(cfg, setup, step))
            setup.sparsifier.remask_second_()
        setup.method.after_step()
        if (step + 1) % cfg.train.log_every == 0 or step + 1 == last:
            value = _check_finite(loss, step + 1, run_dir)
            rate = (step + 1 - window[1]) * cfg.train.batch_size / (time.perf_counter() - window[0])
            window = (time.perf_counter(), step + 1)
            log.write({"kind": "train", "step": step + 1, "epoch": clock.epoch(step + 1), "loss": value,
                       "lr": setup.optimizer.param_groups[0]["lr"], "images_per_s": rate})
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{rate:.0f}")
        bar.update(1)
        if (step + 1) % clock.steps_per_epoch == 0 or step + 1 == clock.total_steps:
            _check_finite(loss, step + 1, run_dir)
            log.sync()
            save_checkpoint(run_dir, _state(setup, step + 1))
    bar.close()
    return last


def _train_step(cfg: Config, setup: TrainingSetup, step: int) -> torch.Tensor:
    """One optimizer step up to and including `optimizer.step()`; returns the loss (no sync)."""
    view_a, view_b = _views(setup, step)
    lr = warmup_cosine(step, total_steps=setup.clock.total_steps,
                       warmup_steps=round(cfg.train.warmup_epochs * setup.clock.steps_per_epoch),
                       base=scaled_lr(cfg.train.lr, cfg.train.batch_size), final=cfg.train.min_lr)
    for group in setup.optimizer.param_groups:
        group["lr"] = lr
    online, second = setup.encoders()
    with setup.autocast():
        loss = setup.method.training_loss(view_a, view_b, online=online, second=second)
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    setup.sparsifier.capture_(step + 1)
    setup.sparsifier.mask_gradients_()
    setup.optimizer.step()
    return loss.detach()


def _views(setup: TrainingSetup, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two augmented views of this step's batch; shared-encoder methods swap them every step
    so each view meets each mask equally often (DESIGN.md §1)."""
    batch = setup.batch(step)  # (B, C, H, W) uint8 on device
    first, second = (make_view(batch, recipe, mean=setup.data.mean, std=setup.data.std,
                               generator=setup.generator) for recipe in setup.recipes)
    if setup.channels_last:
        first, second = (v.contiguous(memory_format=torch.channels_last) for v in (first, second))
    if setup.method.shared_encoder and step % 2 == 1:
        return second, first
    return first, second


def _tau(cfg: Config, setup: TrainingSetup, step: int) -> float:
    return cosine_tau(step, setup.clock.total_steps, base=cfg.method.base_tau, final=cfg.method.final_tau)


def _check_finite(loss: torch.Tensor, step: int, run_dir: Path) -> float:
    value = loss.item()
    if not math.isfinite(value):
        last = run_dir / rundir.CHECKPOINTS / "last.pt"
        where = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
        raise NonFiniteLossError(f"loss is {value} at step {step}; stopped without saving ({where})")
    return value


def _state(setup: TrainingSetup, step: int) -> dict:
    return {
        "step": step,
        "method": setup.method.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "sparsifier": setup.sparsifier.state_dict(),
        "generator": setup.generator.get_state(),
    }


def _restore(setup: TrainingSetup, run_dir: Path, device: torch.device) -> int:
    state = load_checkpoint(run_dir, map_location=device)
    setup.method.load_state_dict(state["method"])
    setup.optimizer.load_state_dict(state["optimizer"])
    setup.sparsifier.load_state_dict(state["sparsifier"])
    setup.generator.set_state(state["generator"].cpu())
    return int(state["step"])


def _finish(cfg: Config, setup: TrainingSetup, run_dir: Path, *, wall_s: float) -> dict:
    """Export the online encoder and masks and write summary.json."""
    export_model(run_dir, setup.method.backbone, setup.sparsifier)
    train = rundir.read_metrics(run_dir, "train")
    summary = {
        "total_steps": setup.clock.total_steps,
        "steps_per_epoch": setup.clock.steps_per_epoch,
        "epochs": cfg.train.epochs,
        "train_images": setup.num_images,
        "final_loss": train[-1]["loss"] if train else None,
        "wall_s_last_process": wall_s,
        "device": str(setup.device),
        "torch": torch.__version__,
        "sparsity": setup.sparsifier.summary(),
    }
    rundir.write_json(run_dir / rundir.SUMMARY, summary)
    return summary

