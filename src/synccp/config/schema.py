"""The configuration schema: one frozen dataclass per TOML section, and the closed choices.

Every user-facing key lives here (DESIGN.md §3); `synccp.config.load` reads files and overrides
into it and `synccp.config.checks` validates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synccp.specs import DataSpec, EvalSpec, ModelSpec, SparsitySettings

# Sections that need no resolving are their specs (synccp.specs): one definition of their keys.
DataConfig = DataSpec
ModelConfig = ModelSpec
SparsityConfig = SparsitySettings
EvalConfig = EvalSpec

class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and the value."""


@dataclass(frozen=True)
class MethodConfig:
    """SSL method; `None` fields take the method's paper defaults and are resolved at load time."""

    name: str = "byol"
    proj_hidden_dim: int | None = None
    proj_output_dim: int | None = None
    pred_hidden_dim: int | None = None
    temperature: float | None = None
    queue_size: int | None = None
    base_tau: float | None = None
    final_tau: float | None = None
    lambda_offdiag: float | None = None
    scale: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 10.0
    batch_size: int = 256
    seed: int = 0
    optimizer: str = "lars"
    lr: float = 1.0
    weight_decay: float = 1e-5
    momentum: float = 0.9
    eta: float = 0.02
    warmup_epochs: float = 1.0
    min_lr: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False  # torch.compile the online backbone in place (synccp.train.setup)
    log_every: int = 10
    progress: bool = True
    sync_bn: bool = False  # torchrun on CUDA: BatchNorm statistics over the global batch
    # torchrun: every process augments the whole global batch (views of a 1-process run)
    global_augment: bool = False
    loggers: str = ""  # comma-separated live loggers beside metrics.jsonl: tensorboard, wandb


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


from synccp.sparsity.granularity import GRANULARITIES  # noqa: E402 (torch-free)
from synccp.sparsity.registry import ALGORITHMS  # noqa: E402 (torch-free)

LOGGERS = ("tensorboard", "wandb")  # train.loggers: synccp.results.loggers

CHOICES: dict[str, tuple[str, ...]] = {
    "data.name": (
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "stl10",
        "image_folder",
        "imagenet",
        "imagenet100",
    ),
    "data.on_corrupt": ("error", "skip"),
    "model.backbone": ("resnet18", "resnet34", "resnet50"),
    "model.stem": ("cifar", "imagenet"),
    "method.name": ("simclr", "mocov2", "byol", "barlow", "simsiam"),
    "train.optimizer": ("sgd", "lars"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.precision": ("auto", "fp32", "bf16"),
    "sparsity.algorithm": ALGORITHMS,  # the registry's rows (synccp.sparsity.registry)
    "sparsity.granularity": GRANULARITIES,  # the registry's rows (synccp.sparsity.granularity)
    "sparsity.allocation": ("global", "uniform", "erk"),
    "sparsity.sparse_branch": ("online", "second"),
}
