"""The training loop around the step (`step.train_step`, where the step order is written): it
only logs, checks and checkpoints.

Under torchrun every process runs this same loop on its share of each global batch. After each
mask update rank 0's masks are broadcast and every rank checks its own against them bit for
bit; at the end the whole state is compared the same way. Rank 0 alone writes the run directory.

Faults: the loss is watched on the device at every step (no host sync) and checked at each log
step and before each checkpoint; the state is checked for NaN/Inf before it is checkpointed or
exported, so bad weights are never written. Checkpoints are atomic with a fallback (checkpoint.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from synccp import distributed, rundir
from synccp.config import Config, config_to_dict
from synccp.results.loggers import with_live_loggers
from synccp.rundir.artifacts import encoder_description, export_model
from synccp.rundir.checkpoint import (
    LAST,
    CheckpointError,
    find_checkpoint,
    first_line,
    first_nonfinite,
    has_checkpoint,
    save_checkpoint,
)
from synccp.rundir.lock import RunLock
from synccp.train.batches import augmentation_seed
from synccp.train.runtime import resolve_device
from synccp.train.setup import TrainingSetup, build_setup
from synccp.train.step import train_step

LOG = logging.getLogger(__name__)
Saved = tuple[Path, int] | None  # the last good checkpoint and its step
# in every checkpoint
REQUIRED = {"method": dict, "optimizer": dict, "sparsifier": dict, "generators": list}


class NonFiniteLossError(FloatingPointError):
    """The loss or the weights became NaN/Inf; names the step and the last good checkpoint."""


class ReplicaMismatchError(RuntimeError):
    """Under torchrun, a rank's masks or state differ from rank 0's (the replicas diverged)."""


def pretrain(cfg: Config, run_dir: str | Path, *, resume: bool = False,
             stop_after: int | None = None) -> dict:
    """Pretrain per `cfg` into `run_dir`; return the summary. `stop_after` ends this process early
    (after that many optimizer steps in total) as if it had been killed after its last checkpoint.

    Inside a torchrun process group (see `distributed.process_group`) this is one replica of the
    run; every rank returns the same summary (a process started by torchrun outside any group
    opens torchrun's group for the duration). Nothing is written before the data, the model and
    the sparsity settings have been built and checked."""
    with distributed.process_group(cfg.train.device):
        return _pretrain(cfg, Path(run_dir), resume=resume, stop_after=stop_after)


def _pretrain(cfg: Config, run_dir: Path, *, resume: bool, stop_after: int | None) -> dict:
    config = config_to_dict(cfg)
    distributed.on_rank_zero(lambda: rundir.check_run_dir(run_dir, config, resume=resume))
    finished = (distributed.on_rank_zero(lambda: rundir.finished_summary(run_dir))
                if resume else None)
    if finished is not None:
        LOG.info("%s holds a finished run (%s): nothing to resume, left untouched", run_dir,
                 rundir.SUMMARY)
        return finished
    device = resolve_device(cfg.train.device)
    setup = build_setup(cfg, device)
    with contextlib.ExitStack() as held:  # rank 0 holds the run directory's lock until the end
        distributed.on_rank_zero(lambda: held.enter_context(RunLock(run_dir)) and None)
        identity = distributed.on_rank_zero(lambda: _prepare(run_dir, config, resume=resume))
        return _train(cfg, setup, run_dir, resume=resume, stop_after=stop_after, identity=identity)


def _prepare(run_dir: Path, config: dict, *, resume: bool) -> str:
    """Create (or check) the run directory under its lock; return the run's identity."""
    rundir.prepare_run_dir(run_dir, config, resume=resume)
    return rundir.run_identity(run_dir)


def _train(cfg: Config, setup: TrainingSetup, run_dir: Path, *, resume: bool,
           stop_after: int | None, identity: str) -> dict:
    log = rundir.MetricsLog(run_dir, enabled=setup.runtime.rank == 0)
    found = (distributed.on_rank_zero(lambda: _checkpoint_to_resume(run_dir, identity))
             if resume else None)
    log = with_live_loggers(log, cfg.train.loggers, run_dir, config=config_to_dict(cfg),
                            first_step=int(found[1]["step"]) if found else 0,
                            enabled=setup.runtime.rank == 0)
    if found is None:
        if resume:
            LOG.info("%s has no checkpoint yet: starting it at step 0", run_dir)
            log.truncate_after(-1)
        log.write({"kind": "mask_update", "step": 0, "epoch": 0.0, **setup.sparsifier.prepare_()})
        step, saved = 0, None
    else:
        step = _restore(setup, *found)
        log.truncate_after(step)
        saved = (found[0], step)
        LOG.info("resumed %s at step %d from %s", run_dir, step, found[0])
    total = setup.clock.total_steps
    last = total if stop_after is None else min(stop_after, total)
    started = time.perf_counter()
    try:
        step = _run_steps(cfg, setup, run_dir, log, first=step, last=last, saved=saved,
                          identity=identity)
    finally:
        log.close()
    if step < setup.clock.total_steps:
        return {"stopped_at": step}
    return _finish(cfg, setup, run_dir, wall_s=time.perf_counter() - started)


def _run_steps(cfg: Config, setup: TrainingSetup, run_dir: Path, log: rundir.MetricsLog, *,
               first: int, last: int, saved: Saved, identity: str | None = None) -> int:
    """Run optimizer steps `first`..`last`-1; checkpoint (tagged with the run's `identity`) at every
    epoch end; return steps done."""
    clock = setup.clock
    bar = tqdm(total=clock.total_steps, initial=first, unit="step", dynamic_ncols=True,
               disable=(not cfg.train.progress or setup.runtime.rank != 0) or None, desc="pretrain")
    window = (time.perf_counter(), first)
    watch = LossWatch(setup.runtime.device)
    for step in range(first, last):
        loss, record = train_step(setup, step)
        watch.observe(loss, step + 1)
        if record is not None:
            _check_masks_agree(setup, step + 1)
            log.write({"kind": "mask_update", "step": step + 1, "epoch": clock.epoch(step + 1),
                       **record})
        # step 1: a first sign of life
        if (step + 1) % cfg.train.log_every == 0 or step + 1 in (1, last):
            watch.raise_if_bad(saved)
            value = distributed.mean(loss).item()
            rate = (step + 1 - window[1]) * cfg.train.batch_size / (time.perf_counter() - window[0])
            window = (time.perf_counter(), step + 1)
            log.write({"kind": "train", "step": step + 1, "epoch": clock.epoch(step + 1),
                       "loss": value, "lr": setup.optimizer.param_groups[0]["lr"],
                       "images_per_s": rate})
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{rate:.0f}")
        bar.update(1)
        if (step + 1) % clock.steps_per_epoch == 0 or step + 1 == clock.total_steps:
            watch.raise_if_bad(saved)
            saved = _checkpoint(setup, run_dir, log, step + 1, saved, identity)
    bar.close()
    return last


class LossWatch:
    """The first optimizer step whose loss was NaN/Inf, and that loss, kept on the device.

    `observe` is a few tiny device ops per step and never synchronizes with the host;
    `raise_if_bad` (at log steps and before checkpoints) is one sync and, under torchrun, one
    all-reduce, so every rank stops at the same step."""

    NONE = 2**62  # "no bad step yet"

    def __init__(self, device: torch.device):
        self.first = torch.full((), self.NONE, dtype=torch.int64, device=device)
        self.value = torch.zeros((), dtype=torch.float32, device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        new = ~torch.isfinite(loss) & (self.first == self.NONE)
        self.first = torch.where(new, step, self.first)
        self.value = torch.where(new, loss.float(), self.value)

    def raise_if_bad(self, saved: Saved) -> None:
        step = distributed.all_min(self.first)
        if step == self.NONE:
            return
        value = float(self.value) if int(self.first) == step else float("nan")
        raise NonFiniteLossError(
            f"the loss is {value} at step {step}; training stopped and no weights from that step "
            f"on were saved ({_last_good(saved)}). A diverging loss usually means train.lr is too "
            f"high for this train.batch_size / train.optimizer")


def _last_good(saved: Saved) -> str:
    if saved is None:
        return "no checkpoint was written yet"
    return f"last good checkpoint: {saved[0]}, step {saved[1]}"


def _check_masks_agree(setup: TrainingSetup, step: int) -> None:
    """Under torchrun: rank 0's new masks are broadcast and every rank compares its own, bitwise."""
    if setup.runtime.world_size == 1:
        return
    masks = [(name, mask.to(setup.runtime.device))
             for name, mask in setup.sparsifier.masks().items()]
    name = distributed.first_mismatch(masks)
    if name is not None:
        raise ReplicaMismatchError(
            f"mask {name} differs between rank 0 and another rank after the mask update at step "
            f"{step}: the replicas have diverged; the last checkpoint holds rank 0's state (resume "
            f"restarts every rank from it)")


def _state(setup: TrainingSetup, step: int, generators: list[torch.Tensor]) -> dict:
    return {
        "step": step,
        "method": setup.method.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "sparsifier": setup.sparsifier.state_dict(),
        "generator": generators[0],
        "generators": generators,  # one augmentation-generator state per rank
    }


def _checkpoint(setup: TrainingSetup, run_dir: Path, log: rundir.MetricsLog, step: int,
                saved: Saved, identity: str | None) -> Saved:
    """Check the state is finite on every rank, give every rank rank 0's buffers (BatchNorm
    statistics), and let rank 0 write the checkpoint; returns the new last good checkpoint."""
    distributed.broadcast_tensors_(list(setup.method.buffers()))
    generators = distributed.all_gather_object(setup.batches.generator.get_state())
    state = _state(setup, step, generators)
    bad = first_nonfinite(state)
    if distributed.any_rank(torch.tensor(bad is not None, device=setup.runtime.device)):
        raise NonFiniteLossError(f"{bad or 'a tensor on another rank'} is NaN/Inf at step {step}; "
                                 f"training stopped without saving it ({_last_good(saved)})")

    def write() -> None:
        log.sync()
        save_checkpoint(run_dir, state, identity=identity)

    distributed.on_rank_zero(write)
    return (run_dir / rundir.CHECKPOINTS / LAST, step)


def _checkpoint_to_resume(run_dir: Path, identity: str) -> tuple[Path, dict] | None:
    """(file, state) of the newest usable checkpoint of this run, or None when the run stopped
    before writing any."""
    if not has_checkpoint(run_dir):
        return None
    return find_checkpoint(run_dir, identity=identity, required=REQUIRED)


def _restore(setup: TrainingSetup, path: Path, state: dict) -> int:
    """Load checkpoint `state` (read from `path`, checksum and identity verified) into the setup."""
    step = state["step"]
    if step > setup.clock.total_steps:
        raise CheckpointError(f"{path} is at step {step}, beyond this run's "
                              f"{setup.clock.total_steps} steps")
    try:
        setup.method.load_state_dict(state["method"])
        setup.optimizer.load_state_dict(state["optimizer"])
        setup.sparsifier.load_state_dict(state["sparsifier"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(f"{path} does not fit this run's model ({type(err).__name__}: "
                              f"{first_line(err)})") from err
    generators = state["generators"]
    if len(generators) == setup.runtime.world_size:
        setup.batches.generator.set_state(generators[setup.runtime.rank].cpu())
    else:
        LOG.warning("the checkpoint was written by %d process(es), this run has %d: augmentations "
                    "restart from fresh generators (the run goes on, not bit-identical to an "
                    "uninterrupted one)", len(generators), setup.runtime.world_size)
        setup.batches.generator.manual_seed(augmentation_seed(setup.batches.seed + step,
                                                              setup.runtime.rank))
    return step


def _check_replicas(setup: TrainingSetup) -> None:
    """Under torchrun: the whole final state of every rank equals rank 0's, bit for bit."""
    if setup.runtime.world_size == 1:
        return
    named = list(setup.method.state_dict().items())
    named += [(f"masks.{k}", v.to(setup.runtime.device))
              for k, v in setup.sparsifier.masks().items()]
    scores = setup.sparsifier.state_dict()["scores"]
    named += [(f"scores.{b}.{k}", v) for b, layer in scores.items() for k, v in layer.items()]
    for index, values in setup.optimizer.state_dict()["state"].items():
        named += [(f"optimizer.{index}.{k}", v) for k, v in values.items() if torch.is_tensor(v)]
    name = distributed.first_mismatch(named)
    if name is not None:
        raise ReplicaMismatchError(f"{name} differs between rank 0 and another rank at the end of "
                                   f"training: the replicas diverged; nothing was exported")


def _finish(cfg: Config, setup: TrainingSetup, run_dir: Path, *, wall_s: float) -> dict:
    """Check the replicas agree, then (rank 0) export the online encoder and masks and write
    summary.json; every rank returns the summary."""
    _check_replicas(setup)
    bad = first_nonfinite(setup.method.backbone.state_dict())
    if bad is not None:
        raise NonFiniteLossError(f"{bad} is NaN/Inf at the end of training; nothing was exported")

    def write() -> dict:
        export_model(run_dir, setup.method.backbone, setup.sparsifier,
                     encoder=encoder_description(cfg, setup.data, setup.method.backbone))
        train = rundir.read_metrics(run_dir, "train")
        summary = {
            "total_steps": setup.clock.total_steps,
            "steps_per_epoch": setup.clock.steps_per_epoch,
            "epochs": cfg.train.epochs,
            "train_images": setup.num_images,
            "final_loss": train[-1]["loss"] if train else None,
            "wall_s_last_process": wall_s,
            "device": str(setup.runtime.device),
            "processes": setup.runtime.world_size,
            "torch": torch.__version__,
            "sparsity": setup.sparsifier.summary(),
        }
        rundir.write_json(run_dir / rundir.SUMMARY, summary)
        return summary

    return distributed.on_rank_zero(write)
