"""Typed specs of a run: what each part of synccp receives instead of the whole config.

`synccp.config.specs.run_spec` reads a `Config` once into a `RunSpec`; the sparsity, cost, eval and
results code take these frozen values (or single fields of them) and never import `synccp.config`.
Sections that need no resolving (`[data]`, `[model]`, `[eval]`, `[sparsity]` as given) are their
own spec and the schema of their TOML section; `[train]` splits into the optimization
(`TrainSpec`) and the runtime (`RuntimeSpec`); `[method]` keeps only the method's own keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-free at import: `synccp --help` and the config schema import this module
    from synccp.methods.rows import MethodRow
    from synccp.sparsity.spec import SparsitySpec


@dataclass(frozen=True)
class DataSpec:
    """The `[data]` section: which images, from where, how they are read."""

    name: str = "fashion_mnist"
    root: str = ""
    subset: int = 0
    image_size: int = 0
    # image_folder: decode from disk per batch (imagenet, imagenet100 always do)
    stream: bool = False
    workers: int = 4  # streaming: DataLoader decoding processes per training process
    on_corrupt: str = "error"  # streaming: an unreadable image stops the run, or is skipped by name


@dataclass(frozen=True)
class ModelSpec:
    """The `[model]` section: the backbone."""

    backbone: str = "resnet18"
    width: int = 64
    stem: str = "cifar"


@dataclass(frozen=True)
class SparsitySettings:
    """The `[sparsity]` section as given, windows in (fractions of) epochs; `spec` turns it into
    the `SparsitySpec` of a run once its steps are known. Its values are checked by that spec
    (and the window keys by `synccp.config.checks`)."""

    # what `synccp pretrain` runs with no arguments, and any TOML without it
    algorithm: str = "synccp"
    granularity: str = "unstructured"
    density: float = 0.1
    initial_density: float = 1.0
    density_gap: float = 0.1
    n: int = 2
    m: int = 4
    block_out: int = 4
    block_in: int = 4
    allocation: str = "global"
    score_ema: float = 0.0
    update_every: int = 50
    # The density ramp (gmp, granet, synccp): fractions of train.epochs, or absolute epochs
    # (start_epoch/end_epoch win when set; setting both forms of one end is an error).
    ramp_start: float | None = None  # default 0.0 (sparsity.schedule.DEFAULT_RAMP)
    ramp_end: float | None = None  # default 0.75
    start_epoch: float | None = None
    end_epoch: float | None = None
    # drop-and-grow: RigL 0.3, GraNet 0.5 (their papers' defaults)
    drop_fraction: float | None = None
    # fraction of training where drop-and-grow stops: RigL 0.75, GraNet 1.0
    regrow_end: float | None = None
    sparse_branch: str = "second"

    def ramp_epochs(self, epochs: float) -> tuple[float, float]:
        """(start, end) of the density ramp in epochs of a run of `epochs` (the absolute keys win
        over the fractions; `sparsity.schedule.ramp_epochs`)."""
        from synccp.sparsity.schedule import ramp_epochs

        return ramp_epochs(start_epoch=self.start_epoch, end_epoch=self.end_epoch,
                           ramp_start=self.ramp_start, ramp_end=self.ramp_end, epochs=epochs)

    def spec(
        self, *, epochs: float, steps_per_epoch: int, total_steps: int, seed: int
    ) -> SparsitySpec:
        """The run's `SparsitySpec`: ramp and drop-and-grow windows in optimizer steps
        (`sparsity.schedule.sparsity_steps`, the one conversion); ValueError names a bad key."""
        from synccp.sparsity.schedule import sparsity_steps
        from synccp.sparsity.spec import SparsitySpec

        start, end, regrow_end = sparsity_steps(
            self, epochs=epochs, steps_per_epoch=steps_per_epoch, total_steps=total_steps
        )
        return SparsitySpec(
            algorithm=self.algorithm,
            granularity=self.granularity,
            n=self.n,
            m=self.m,
            block=(self.block_out, self.block_in),
            density=self.density,
            initial_density=self.initial_density,
            density_gap=self.density_gap,
            allocation=self.allocation,
            score_ema=self.score_ema,
            update_every=self.update_every,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            ramp_start_step=start,
            ramp_end_step=end,
            drop_fraction=self.drop_fraction,
            regrow_end_step=regrow_end,
            sparse_branch=self.sparse_branch,
            seed=seed,
        )


@dataclass(frozen=True)
class EvalSpec:
    """The `[eval]` section: the frozen-feature probes."""

    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_epochs: int = 100
    linear_lr: float = 0.1
    linear_batch_size: int = 512
    raw_baseline: bool = True
    subset: int = 0  # probe on the first N train and test images (0 = the full protocol)
    batch_size: int = 1024  # images per feature-extraction batch


@dataclass(frozen=True)
class MethodSpec:
    """The SSL method and its own options, resolved (every option of its row, defaults filled)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def row(self) -> MethodRow:
        from synccp.methods.rows import method_row

        return method_row(self.name)

    @property
    def shared_encoder(self) -> bool:
        return self.row.shared_encoder


@dataclass(frozen=True)
class TrainSpec:
    """Optimization: schedule length, batch, seed, optimizer and learning-rate schedule."""

    epochs: float
    batch_size: int
    seed: int
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    eta: float
    warmup_epochs: float
    min_lr: float


@dataclass(frozen=True)
class RuntimeSpec:
    """Where and how a run executes and reports; never changes what it computes beyond the
    precision (`precision`), the compiler's kernels (`compile`: the same operations, other
    low-order bits) and the distributed batch statistics (`sync_bn`)."""

    device: str
    precision: str
    compile: bool
    log_every: int
    progress: bool
    sync_bn: bool
    global_augment: bool
    loggers: str


@dataclass(frozen=True)
class RunSpec:
    """Every spec of one run; `record` is its resolved config in config.json shape (for tables
    and run identities, never for decisions)."""

    data: DataSpec
    model: ModelSpec
    method: MethodSpec
    train: TrainSpec
    runtime: RuntimeSpec
    sparsity: SparsitySettings
    eval: EvalSpec
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def sparsity_spec(self, *, steps_per_epoch: int, total_steps: int) -> SparsitySpec:
        """The run's `SparsitySpec` for its clock (steps per epoch, total optimizer steps)."""
        return self.sparsity.spec(
            epochs=self.train.epochs,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            seed=self.train.seed,
        )
