"""Everything a training run holds, built from a `Config`: data, method, optimizer, Sparsifier."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from synccp.config import Config
from synccp.data import ImageDataset, load_dataset
from synccp.data.views import ViewRecipe, view_recipes
from synccp.methods import SSLMethod, build_method, method_defaults
from synccp.models import build_backbone, prunable_parameters
from synccp.sparsity.sparsifier import Sparsifier
from synccp.train.optim import build_optimizer

LOG = logging.getLogger(__name__)

@dataclass(frozen=True)
class Clock:
    """Step counters: optimizer steps per epoch (last partial batch dropped) and in total."""

    steps_per_epoch: int
    total_steps: int

    def epoch(self, step: int) -> float:
        return step / self.steps_per_epoch


Encode = Callable[[torch.Tensor], torch.Tensor]
PRETRAIN_SPLIT = {"stl10": "train+unlabeled"}


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; `cuda` without a GPU is an error naming the key."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available")
    return torch.device(name)


@dataclass
class TrainingSetup:
    """The state of a run: data on device, method, optimizer, Sparsifier, RNG and step clock."""

    data: ImageDataset
    images: torch.Tensor  # (N, C, H, W) uint8 on device
    method: SSLMethod
    optimizer: torch.optim.Optimizer
    sparsifier: Sparsifier
    recipes: tuple[ViewRecipe, ViewRecipe]
    generator: torch.Generator
    clock: Clock
    device: torch.device
    seed: int
    batch_size: int
    bf16: bool
    channels_last: bool
    _order: tuple[int, torch.Tensor] | None = None

    @property
    def num_images(self) -> int:
        return len(self.images)

    def batch(self, step: int) -> torch.Tensor:
        """This step's batch: epoch `e` visits a permutation drawn from (seed, e), so a resumed
        run sees exactly the batches an uninterrupted one would; the last partial batch is dropped."""
        epoch, index = divmod(step, self.clock.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.images), generator=generator).to(self.device))
        size = self.batch_size
        return self.images[self._order[1][index * size:(index + 1) * size]]

    def encoders(self) -> tuple[Encode, Encode]:
        """(online, second) feature callables for this step (DESIGN.md §1).

        Shared encoder: both run θ, each through its own mask (`functional_call` with θ⊙M when
        the mask does not cover every nonzero weight). Momentum: the online backbone, and the
        EMA target under no_grad (its weights are already re-masked)."""
        method = self.method
        if method.shared_encoder:
            return (_masked(method.backbone, self.sparsifier.branch_weights("online")),
                    _masked(method.backbone, self.sparsifier.branch_weights("second")))
        target = method.target_backbone

        def second(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return target(x)

        return method.backbone, second

    def autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _masked(module: nn.Module, weights: dict[str, torch.Tensor] | None) -> Encode:
    if weights is None:
        return module
    return lambda x: torch.func.functional_call(module, weights, (x,))


def load_pretrain_data(cfg: Config) -> ImageDataset:
    """The pretraining split of `data.name`, cut to the first `data.subset` images when set."""
    data = load_dataset(cfg.data.name, PRETRAIN_SPLIT.get(cfg.data.name, "train"),
                        root=cfg.data.root or None, image_size=cfg.data.image_size or None)
    if cfg.data.subset:
        data = dataclasses.replace(data, images=data.images[:cfg.data.subset],
                                   labels=data.labels[:cfg.data.subset])
    if len(data.images) < cfg.train.batch_size:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is larger than the "
                         f"{len(data.images)} training images of data.name={cfg.data.name!r}")
    return data


def build_model(cfg: Config, in_channels: int) -> SSLMethod:
    """Backbone + method heads as the config says (plain modules; no sparsity inside)."""
    backbone = build_backbone(cfg.model.backbone, stem=cfg.model.stem, width=cfg.model.width,
                              in_channels=in_channels)
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.method).items() if k != "name"}
    allowed = method_defaults(cfg.method.name)
    return build_method(cfg.method.name, backbone, **{k: v for k, v in kwargs.items() if k in allowed})


def build_sparsifier(cfg: Config, method: SSLMethod, clock: Clock) -> Sparsifier:
    s = cfg.sparsity
    target = None if method.shared_encoder else prunable_parameters(method.target_backbone)
    return Sparsifier(
        online=prunable_parameters(method.backbone), second=target, algorithm=s.algorithm,
        granularity=s.granularity, density=s.density, initial_density=s.initial_density,
        density_gap=s.density_gap, n=s.n, m=s.m, block=(s.block_out, s.block_in),
        allocation=s.allocation, score_ema=s.score_ema, update_every=s.update_every,
        start_step=round(s.start_epoch * clock.steps_per_epoch),
        end_step=round(s.end_epoch * clock.steps_per_epoch), steps_per_epoch=clock.steps_per_epoch,
        total_steps=clock.total_steps, drop_fraction=s.drop_fraction, sparse_branch=s.sparse_branch,
        seed=cfg.train.seed)


def build_setup(cfg: Config, device: torch.device) -> TrainingSetup:
    """Seed, load data, build the model, optimizer and Sparsifier for `cfg` on `device`."""
    torch.manual_seed(cfg.train.seed)
    data = load_pretrain_data(cfg)
    steps_per_epoch = len(data.images) // cfg.train.batch_size
    clock = Clock(steps_per_epoch, max(1, round(cfg.train.epochs * steps_per_epoch)))
    method = build_model(cfg, in_channels=data.images.shape[1]).to(device)
    on_gpu = device.type == "cuda"
    if on_gpu:
        method = method.to(memory_format=torch.channels_last)
    t = cfg.train
    optimizer = build_optimizer(t.optimizer, [method], lr=t.lr, momentum=t.momentum,
                                weight_decay=t.weight_decay, eta=t.eta)
    size = data.images.shape[-1]
    return TrainingSetup(
        data=data, images=data.images.to(device), method=method, optimizer=optimizer,
        sparsifier=build_sparsifier(cfg, method, clock),
        recipes=view_recipes(cfg.method.name, image_size=size, channels=data.images.shape[1]),
        generator=torch.Generator(device).manual_seed(cfg.train.seed), clock=clock, device=device,
        seed=cfg.train.seed, batch_size=cfg.train.batch_size,
        bf16=on_gpu and t.precision in ("auto", "bf16"), channels_last=on_gpu)
