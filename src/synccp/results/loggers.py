"""Live loggers next to `metrics.jsonl` (which stays the source of truth): TensorBoard and W&B.

Chosen by `train.loggers` (comma-separated). Every record the training loop writes to
metrics.jsonl is also sent to each live logger as scalars: nested numbers are flattened into
``<kind>/<path>`` tags (``train/loss``, ``mask_update/density/online/total``), per-layer tables
(``layers``) are left to metrics.jsonl and `synccp report`. Files go under the run directory:
``tb/`` (TensorBoard event files: ``tensorboard --logdir DIR/tb``) and ``wandb/``. W&B runs
offline unless ``WANDB_MODE`` says otherwise (``wandb sync DIR/wandb/offline-run-*`` uploads).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOG = logging.getLogger(__name__)
TENSORBOARD_DIR, WANDB_DIR = "tb", "wandb"


def scalars(record: dict, *, prefix: str | None = None) -> dict[str, float]:
    """``{tag: value}`` of the numeric leaves of a metrics record, per-layer tables excluded."""
    prefix = record.get("kind", "metrics") if prefix is None else prefix
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in ("kind", "step", "layers"):
            continue
        tag = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(scalars(value, prefix=tag))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[tag] = float(value)
    return out


class TensorBoardLogger:
    """`torch.utils.tensorboard.SummaryWriter` into DIR/tb (extra: ``synccp[tensorboard]``)."""

    def __init__(self, run_dir: Path, *, config: dict, first_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise RuntimeError(
                "train.loggers=tensorboard needs the tensorboard package: "
                "pip install 'synccp[tensorboard]'"
            ) from err
        # purge_step: a resumed run drops what the killed process logged after its checkpoint
        self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=first_step or None)
        if first_step == 0:
            self.writer.add_text("config", f"```\n{_flat_config(config)}\n```", 0)

    def write(self, record: dict) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run in DIR/wandb, offline by default (``pip install 'synccp[wandb]'``)."""

    def __init__(self, run_dir: Path, *, config: dict, first_step: int):
        try:
            import wandb
        except ImportError as err:
            raise RuntimeError(
                "train.loggers=wandb needs the wandb package: pip install 'synccp[wandb]'"
            ) from err
        (run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            dir=str(run_dir),
            name=run_dir.name,
            config=config,
            resume="allow",
            id=_wandb_id(run_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
            project=os.environ.get("WANDB_PROJECT", "synccp"),
        )

    def write(self, record: dict) -> None:
        self.run.log(scalars(record), step=record["step"])

    def flush(self) -> None:
        """W&B writes in its own process; nothing to flush here."""

    def close(self) -> None:
        self.run.finish()


LOGGERS = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def _flat_config(config: dict) -> str:
    return "\n".join(
        f"{section}.{key} = {value!r}"
        for section, table in config.items()
        for key, value in table.items()
    )


def _wandb_id(run_dir: Path) -> str:
    """A stable run id per run directory, so `--resume` continues the same W&B run."""
    import hashlib

    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]


class MetricsTee:
    """`metrics.jsonl` first, then every live logger: the loop's one place records go."""

    def __init__(self, log, live: list):
        self.log, self.live = log, live

    def write(self, record: dict) -> None:
        self.log.write(record)
        for logger in self.live:
            logger.write(record)

    def truncate_after(self, step: int) -> None:
        self.log.truncate_after(step)

    def sync(self) -> None:
        self.log.sync()
        for logger in self.live:
            logger.flush()

    def close(self) -> None:
        for logger in self.live:
            logger.close()


def with_live_loggers(
    log, names: str, run_dir: Path, *, config: dict, first_step: int, enabled: bool
) -> MetricsTee:
    """Wrap the run's MetricsLog with the loggers `names` lists (rank 0 only: `enabled`)."""
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    live = (
        [LOGGERS[name](Path(run_dir), config=config, first_step=first_step) for name in chosen]
        if enabled
        else []
    )
    if live:
        LOG.info("live loggers: %s (metrics.jsonl stays the record)", ", ".join(chosen))
    return MetricsTee(log, live)
