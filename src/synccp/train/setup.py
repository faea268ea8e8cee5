"""Everything a training run holds, built from a `Config`: data, method, optimizer, Sparsifier.

Under torchrun (DESIGN.md §2) the setup is one replica of the run: the method is wrapped in
DistributedDataParallel (optionally with SyncBatchNorm), every process draws the same permutation
of the data and takes its slice of each global batch of `train.batch_size` images, and each
process has its own augmentation generator (seeded from the seed and its rank; rank 0 uses the
seed itself, so a one-process run is unchanged). Everything else — masks, scores, schedules —
follows from identical all-reduced gradients and is identical on every rank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from synccp import distributed
from synccp.config import Config
from synccp.data import ImageDataset, load_dataset
from synccp.data.loader import StreamBatches
from synccp.data.stream import STREAMED, StreamingDataset, load_stream
from synccp.data.views import ViewRecipe, view_recipes
from synccp.limits import check_totals
from synccp.methods import SSLMethod, build_method, method_defaults
from synccp.models import build_backbone, prunable_parameters
from synccp.sparsity.registry import policy_for
from synccp.sparsity.granularity import Pattern, unfit_reason
from synccp.sparsity.schedule import sparsity_steps
from synccp.sparsity.sparsifier import Sparsifier
from synccp.sparsity.spec import SparsitySpec
from synccp.train.optim import build_optimizer
from synccp.train.schedules import Clock, make_clock

LOG = logging.getLogger(__name__)

Encode = Callable[[torch.Tensor], torch.Tensor]
PRETRAIN_SPLIT = {"stl10": "train+unlabeled"}
OUTPUT_STRIDE = {"cifar": 8, "imagenet": 32}  # stem (1 or 4) × three stride-2 stages
_RANK_SEED_STEP = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads the ranks' seeds apart


def resolve_device(name: str) -> torch.device:
    """`auto` → cuda when available, else cpu; `cuda` without a GPU is an error naming the key.
    Under torchrun on CUDA each process gets its own GPU (the current device, `LOCAL_RANK`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available")
    if name == "cuda" and distributed.is_distributed():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def augmentation_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s augmentation generator: `seed` itself on rank 0."""
    return (seed + rank * _RANK_SEED_STEP) % 2**63


@dataclass
class TrainingSetup:
    """The state of a run: data on device, method, optimizer, Sparsifier, RNG and step clock."""

    data: ImageDataset | StreamingDataset
    images: torch.Tensor | None  # (N, C, H, W) uint8 on device; None when streamed from disk
    method: SSLMethod
    optimizer: torch.optim.Optimizer
    sparsifier: Sparsifier
    recipes: tuple[ViewRecipe, ViewRecipe]
    generator: torch.Generator
    clock: Clock
    device: torch.device
    seed: int
    batch_size: int  # global: images per optimizer step over all processes
    bf16: bool
    channels_last: bool
    rank: int = 0
    world_size: int = 1
    global_augment: bool = False
    replica: nn.Module | None = None  # DistributedDataParallel(method) under torchrun
    norm_branch: str | None = None  # the branch that runs the method's branch norms (SDCLR)
    stream: StreamBatches | None = None  # the batches of a streamed dataset (data.stream, imagenet)
    _order: tuple[int, torch.Tensor] | None = None

    @property
    def num_images(self) -> int:
        return len(self.data)

    @property
    def model(self) -> nn.Module:
        """What the loop calls for the loss: the DDP replica, else the method (forward = loss)."""
        return self.method if self.replica is None else self.replica

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def batch(self, step: int) -> torch.Tensor:
        """This process's images of step `step`: (B / world_size, C, H, W), or the whole global
        batch with `global_augment` (the loop augments it and keeps this rank's slice).

        Epoch `e` visits a permutation drawn from (seed, e) — the same on every rank — so a
        resumed run sees exactly the batches an uninterrupted one would; rank r takes the r-th
        slice of each global batch; the last partial global batch is dropped. A streamed dataset
        yields the same batches, decoded from disk by its DataLoader workers."""
        if self.stream is not None:
            return self.stream.batch(step)
        epoch, index = divmod(step, self.clock.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = (epoch, torch.randperm(len(self.images), generator=generator).to(self.device))
        start = index * self.batch_size
        if not self.global_augment:
            start += self.rank * self.local_batch_size
        size = self.batch_size if self.global_augment else self.local_batch_size
        return self.images[self._order[1][start:start + size]]

    def local_slice(self, views: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch of views (`global_augment`): (B / world_size, ...)."""
        size = self.local_batch_size
        return views[self.rank * size:(self.rank + 1) * size]

    def encoders(self) -> tuple[Encode, Encode]:
        """(online, second) feature callables for this step (DESIGN.md §1).

        Shared encoder: both run θ, each through its own mask (`functional_call` with θ⊙M when
        the mask does not cover every nonzero weight). Momentum: the online backbone, and the
        EMA target under no_grad (its weights are already re-masked)."""
        method = self.method
        if method.shared_encoder:
            norms = method.branch_norm_tensors()  # SDCLR: the pruned branch's own BatchNorm
            return tuple(_masked(method.backbone, _overrides(self.sparsifier.branch_weights(branch),
                                                             norms if branch == self.norm_branch else {}))
                         for branch in ("online", "second"))
        target = _masked(method.target_backbone, self.sparsifier.branch_weights("second"))

        def second(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return target(x)

        return method.backbone, second

    def autocast(self):
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _overrides(weights: dict[str, torch.Tensor] | None, norms: dict[str, torch.Tensor]
               ) -> dict[str, torch.Tensor] | None:
    if not norms:
        return weights
    return {**(weights or {}), **norms}


def _masked(module: nn.Module, weights: dict[str, torch.Tensor] | None) -> Encode:
    if weights is None:
        return module
    return lambda x: torch.func.functional_call(module, weights, (x,))


def load_pretrain_data(cfg: Config) -> ImageDataset | StreamingDataset:
    """The pretraining split of `data.name`, cut to the first `data.subset` images when set
    (a streamed dataset keeps `data.subset` images evenly spaced over its file index)."""
    d = cfg.data
    if d.name in STREAMED or d.stream:
        data = load_stream(d.name, "train", root=d.root or None, image_size=d.image_size or None,
                           subset=d.subset, on_corrupt=d.on_corrupt)
        _check_enough_images(len(data), cfg)
        check_image_size(data.image_size, cfg)
        return data
    data = load_dataset(cfg.data.name, PRETRAIN_SPLIT.get(cfg.data.name, "train"),
                        root=cfg.data.root or None, image_size=cfg.data.image_size or None)
    if cfg.data.subset:
        data = dataclasses.replace(data, images=data.images[:cfg.data.subset],
                                   labels=data.labels[:cfg.data.subset])
    _check_enough_images(len(data.images), cfg)
    check_image_size(data.images.shape[-1], cfg)
    return data


def _check_enough_images(count: int, cfg: Config) -> None:
    if count < cfg.train.batch_size:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} is larger than the "
                         f"{count} training images of data.name={cfg.data.name!r}")


def check_image_size(size: int, cfg: Config) -> None:
    """The images must be at least as large as the backbone's output stride, or the last stage
    computes on zero padding instead of the image (training would run, silently, on nothing)."""
    stride = OUTPUT_STRIDE[cfg.model.stem]
    if size < stride:
        source = (f"data.image_size={cfg.data.image_size}" if cfg.data.image_size else
                  f"data.image_size=0 (the native {size}x{size} of data.name={cfg.data.name!r})")
        raise ValueError(f"{source} is smaller than the output stride {stride} of model.backbone="
                         f"{cfg.model.backbone!r} with model.stem={cfg.model.stem!r}; set "
                         f"data.image_size >= {stride}" + (" or model.stem='cifar'" if stride > 8 else ""))


def check_batch(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the processes, at least 2 images each (BatchNorm
    and the contrastive losses need more than one sample)."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of processes "
                         f"({world_size}): each takes an equal share of every global batch")
    if batch_size // world_size < 2:
        where = f" per process ({world_size} processes)" if world_size > 1 else ""
        raise ValueError(f"train.batch_size={batch_size} gives {batch_size // world_size} image{where}; "
                         f"BatchNorm and the SSL losses need at least 2 per process")


def check_sparsity_fits(cfg: Config, method: SSLMethod) -> None:
    """A sparse run whose granularity fits none of the prunable layers would silently train dense:
    refuse it, naming the keys and a layer (layers that do not fit while others do are left
    dense with a warning and listed in summary.json)."""
    s = cfg.sparsity
    if s.algorithm == "dense":
        return
    pattern = Pattern(s.granularity, n=s.n, m=s.m, block=(s.block_out, s.block_in))
    shapes = {name: tuple(p.shape) for name, p in prunable_parameters(method.backbone).items()}
    reasons = {name: unfit_reason(shape, pattern) for name, shape in shapes.items()}
    if all(reason is not None for reason in reasons.values()):
        name, reason = next(iter(reasons.items()))
        keys = {"nm": "sparsity.n/sparsity.m", "block": "sparsity.block_out/sparsity.block_in"}
        raise ValueError(f"sparsity.granularity={s.granularity!r} fits none of the {len(shapes)} prunable "
                         f"layers of model.backbone={cfg.model.backbone!r} at model.width={cfg.model.width} "
                         f"(e.g. {name}: {reason}); the run would be dense. Change "
                         f"{keys.get(s.granularity, 'sparsity.granularity')} or model.width")


def build_model(cfg: Config, in_channels: int) -> SSLMethod:
    """Backbone + method heads as the config says (plain modules; no sparsity inside)."""
    backbone = build_backbone(cfg.model.backbone, stem=cfg.model.stem, width=cfg.model.width,
                              in_channels=in_channels)
    kwargs = {k: v for k, v in dataclasses.asdict(cfg.method).items() if k != "name"}
    allowed = method_defaults(cfg.method.name)
    method = build_method(cfg.method.name, backbone, **{k: v for k, v in kwargs.items() if k in allowed})
    if method.shared_encoder and policy_for(cfg.sparsity.algorithm).branch_norms:
        method.add_branch_norms()
    return method


def sparsity_spec(cfg: Config, clock: Clock) -> SparsitySpec:
    """The `[sparsity]` section as a `SparsitySpec`, its windows in optimizer steps."""
    s = cfg.sparsity
    start_step, end_step, regrow_end = sparsity_steps(s, epochs=cfg.train.epochs,
                                                      steps_per_epoch=clock.steps_per_epoch,
                                                      total_steps=clock.total_steps)
    return SparsitySpec(
        algorithm=s.algorithm, granularity=s.granularity, n=s.n, m=s.m, block=(s.block_out, s.block_in),
        density=s.density, initial_density=s.initial_density, density_gap=s.density_gap,
        allocation=s.allocation, score_ema=s.score_ema, update_every=s.update_every,
        total_steps=clock.total_steps, steps_per_epoch=clock.steps_per_epoch, ramp_start_step=start_step,
        ramp_end_step=end_step, drop_fraction=s.drop_fraction, regrow_end_step=regrow_end,
        sparse_branch=s.sparse_branch, seed=cfg.train.seed)


def build_sparsifier(cfg: Config, method: SSLMethod, clock: Clock) -> Sparsifier:
    """The run's Sparsifier over the backbone's prunable weights (and the target's); gradients
    are masked by the step, not by hooks (under DDP a hook would see unaveraged gradients)."""
    target = None if method.shared_encoder else prunable_parameters(method.target_backbone)
    return Sparsifier(prunable_parameters(method.backbone), sparsity_spec(cfg, clock), target=target,
                      hooks=False)


def _replicate(method: SSLMethod, device: torch.device) -> nn.Module | None:
    """DistributedDataParallel over the method (its forward is `training_loss`); None on one process.

    Target parameters take no gradient, so DDP leaves them alone. Buffers are not broadcast every
    step (`broadcast_buffers=False`): BatchNorm running statistics never enter a training forward,
    and a MoCo queue is identical on every rank by construction; the loop copies rank 0's buffers
    to every rank at each checkpoint instead."""
    if distributed.world_size() == 1:
        return None
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.12 renamed the switch (its version still syncs once at construction, which is fine)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else "broadcast_buffers")
    device_ids = [device.index] if device.type == "cuda" else None
    return ddp(method, device_ids=device_ids, **{no_sync: False})


def _sync_batchnorm(cfg: Config, method: SSLMethod, device: torch.device) -> SSLMethod:
    """`train.sync_bn`: BatchNorm statistics over the global batch (every BatchNorm, targets too).

    Applied inside any process group, one of a single process too (there it computes plain
    batch statistics: how benchmarks/gpu_check.sh checks it on one GPU)."""
    if not cfg.train.sync_bn or not distributed.is_distributed():
        return method
    if device.type != "cuda":
        raise ValueError("train.sync_bn=true needs CUDA devices: torch.nn.SyncBatchNorm has no CPU "
                         "kernel (with gloo on CPU, BatchNorm statistics stay per process)")
    return nn.SyncBatchNorm.convert_sync_batchnorm(method)


def use_bf16(precision: str, device: torch.device) -> bool:
    """bf16 autocast for `train.precision`: `bf16` on any device (on CPUs with AMX/AVX-512 bf16
    oneDNN trains 2.3x faster, docs/results.md), `auto` on CUDA only, `fp32` never."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def build_setup(cfg: Config, device: torch.device, *,
                data: ImageDataset | StreamingDataset | None = None) -> TrainingSetup:
    """Seed, load data, build the model, optimizer and Sparsifier for `cfg` on `device` (one
    replica of a torchrun run when a process group is open). `data` replaces the configured
    dataset (benchmarks on synthetic images)."""
    rank, world = distributed.rank(), distributed.world_size()
    check_batch(cfg.train.batch_size, world)
    torch.manual_seed(cfg.train.seed)
    data = load_pretrain_data(cfg) if data is None else data
    clock = make_clock(len(data), batch_size=cfg.train.batch_size, epochs=cfg.train.epochs)
    check_totals(cfg, steps_per_epoch=clock.steps_per_epoch)  # image folders: size known only now
    method = build_model(cfg, in_channels=data.channels)
    check_sparsity_fits(cfg, method)
    method = _sync_batchnorm(cfg, method, device).to(device)
    t = cfg.train
    bf16 = use_bf16(t.precision, device)
    channels_last = bf16 or device.type == "cuda"
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(t.optimizer, [method], lr=t.lr, momentum=t.momentum,
                                weight_decay=t.weight_decay, eta=t.eta)
    generator_seed = cfg.train.seed if t.global_augment else augmentation_seed(cfg.train.seed, rank)
    streamed = isinstance(data, StreamingDataset)
    return TrainingSetup(
        data=data, images=None if streamed else data.images.to(device), method=method,
        optimizer=optimizer, sparsifier=build_sparsifier(cfg, method, clock),
        recipes=view_recipes(cfg.method.name, image_size=data.image_size, channels=data.channels),
        generator=torch.Generator(device).manual_seed(generator_seed), clock=clock, device=device,
        seed=cfg.train.seed, batch_size=cfg.train.batch_size,
        bf16=bf16, channels_last=channels_last, rank=rank,
        world_size=world, global_augment=t.global_augment and world > 1,
        replica=_replicate(method, device),
        norm_branch=cfg.sparsity.sparse_branch if method.branch_norms is not None else None,
        stream=_stream(cfg, data, device, clock, rank, world) if streamed else None)


def _stream(cfg: Config, data: StreamingDataset, device: torch.device, clock: Clock, rank: int,
            world: int) -> StreamBatches:
    """The batches of a streamed dataset in `TrainingSetup.batch`'s order, for this rank."""
    batch, whole = cfg.train.batch_size, cfg.train.global_augment and world > 1
    return StreamBatches(data, device=device, seed=cfg.train.seed, batch_size=batch,
                         take=batch if whole else batch // world, offset=0 if whole else rank * (batch // world),
                         steps_per_epoch=clock.steps_per_epoch, workers=cfg.data.workers)
