"""Everything a training run holds, built from a `Config`: data stream, method, optimizer,
Sparsifier, schedules and runtime.

Under torchrun (DESIGN.md §2) the setup is one replica of the run: the method is wrapped in
DistributedDataParallel (optionally with SyncBatchNorm; `runtime.py`), every process draws the
same permutation of the data and takes its slice of each global batch (`batches.py`).
Everything else — masks, scores, schedules — follows from identical all-reduced gradients and
is identical on every rank.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch
from torch import nn

from synccp import distributed
from synccp.config import Config
from synccp.config.limits import check_totals
from synccp.data import ImageDataset, load_dataset
from synccp.data.loader import StreamBatches
from synccp.data.stream import STREAMED, StreamingDataset, load_stream
from synccp.methods import SSLMethod, build_method, method_defaults, view_recipes
from synccp.models import build_backbone, prunable_parameters
from synccp.sparsity.granularity import pattern_for
from synccp.sparsity.registry import policy_for
from synccp.sparsity.sparsifier import Sparsifier
from synccp.sparsity.spec import SparsitySpec
from synccp.train.batches import ViewStream, augmentation_seed
from synccp.train.optim import build_optimizer
from synccp.train.runtime import Runtime, make_runtime, replicate, sync_batchnorm
from synccp.train.schedules import Clock, StepSchedules, make_clock, scaled_lr

LOG = logging.getLogger(__name__)

PRETRAIN_SPLIT = {"stl10": "train+unlabeled"}
OUTPUT_STRIDE = {"cifar": 8, "imagenet": 32}  # stem (1 or 4) × three stride-2 stages


@dataclass
class TrainingSetup:
    """The state of a run: its data stream, method, optimizer, Sparsifier, schedules, runtime."""

    data: ImageDataset | StreamingDataset
    batches: ViewStream
    method: SSLMethod
    optimizer: torch.optim.Optimizer
    sparsifier: Sparsifier
    clock: Clock
    schedules: StepSchedules
    runtime: Runtime
    replica: nn.Module | None = None  # DistributedDataParallel(method) under torchrun
    norm_branch: str | None = None  # the branch that runs the method's branch norms (SDCLR)

    @property
    def num_images(self) -> int:
        return len(self.data)

    @property
    def model(self) -> nn.Module:
        """What the step calls for the loss: the DDP replica, else the method (forward = loss)."""
        return self.method if self.replica is None else self.replica


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
                         f"data.image_size >= {stride}"
                         + (" or model.stem='cifar'" if stride > 8 else ""))


def check_batch(batch_size: int, world_size: int) -> None:
    """The global batch must split evenly over the processes, at least 2 images each (BatchNorm
    and the contrastive losses need more than one sample)."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size={batch_size} must be divisible by the number of "
                         f"processes ({world_size}): each takes an equal share of every global "
                         f"batch")
    if batch_size // world_size < 2:
        where = f" per process ({world_size} processes)" if world_size > 1 else ""
        raise ValueError(f"train.batch_size={batch_size} gives {batch_size // world_size} "
                         f"image{where}; BatchNorm and the SSL losses need at least 2 per process")


def check_sparsity_fits(cfg: Config, method: SSLMethod) -> None:
    """A sparse run whose granularity fits none of the prunable layers would silently train dense:
    refuse it, naming the keys and a layer (layers that do not fit while others do are left
    dense with a warning and listed in summary.json)."""
    s = cfg.sparsity
    if s.algorithm == "dense":
        return
    pattern = pattern_for(s.granularity, n=s.n, m=s.m, block=(s.block_out, s.block_in))
    shapes = {name: tuple(p.shape) for name, p in prunable_parameters(method.backbone).items()}
    reasons = {name: pattern.unfit_reason(shape) for name, shape in shapes.items()}
    if all(reason is not None for reason in reasons.values()):
        name, reason = next(iter(reasons.items()))
        raise ValueError(f"sparsity.granularity={s.granularity!r} fits none of the {len(shapes)} "
                         f"prunable layers of model.backbone={cfg.model.backbone!r} at "
                         f"model.width={cfg.model.width} (e.g. {name}: {reason}); the run would "
                         f"be dense. Change {pattern.keys} or model.width")


def build_model(cfg: Config, in_channels: int) -> SSLMethod:
    """Backbone + method heads as the config says (plain modules; no sparsity inside)."""
    backbone = build_backbone(cfg.model.backbone, stem=cfg.model.stem, width=cfg.model.width,
                              in_channels=in_channels)
    own = method_defaults(cfg.method.name)  # the method row's keys (others are None: refused)
    method = build_method(cfg.method.name, backbone, **{k: getattr(cfg.method, k) for k in own})
    if method.shared_encoder and policy_for(cfg.sparsity.algorithm).branch_norms:
        method.add_branch_norms()
    return method


# torch.compile's options for `train.compile` (its defaults: the inductor backend). Tests set
# {"backend": "aot_eager"}: the same Dynamo graphs and AOTAutograd, without generating C++.
COMPILE_OPTIONS: dict = {}


def compile_backbone(backbone: nn.Module, device: torch.device) -> None:
    """`train.compile`: compile the online backbone in place (`nn.Module.compile`: parameter and
    state-dict names unchanged, so masks, checkpoints and exports are the eager run's). Both views
    and SyncCP's masked branches (`functional_call` with θ⊙M) go through its graphs; the heads,
    the loss, the optimizer and a momentum target stay eager. Measured: docs/results.md.

    On the CPU the compiled graph runs channels_last, where torch 2.13's fp32 backward of a
    strided 1×1 convolution with fewer than 8 input channels crashes or writes wrong gradients
    (oneDNN#6035; benchmarks/repro_conv_backward_crash.py): such a backbone is refused."""
    if device.type == "cpu":
        hazards = [f"{name} ({module.in_channels} input channels, stride {module.stride})"
                   for name, module in backbone.named_modules()
                   if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)
                   and module.stride != (1, 1) and module.in_channels < 8]
        if hazards:
            raise ValueError(
                f"train.compile=true on the CPU: the backbone has strided 1x1 convolutions with "
                f"fewer than 8 input channels ({', '.join(hazards[:3])}); torch's CPU backward "
                f"of these in the compiler's channels_last layout crashes or computes wrong "
                f"gradients (oneDNN#6035, benchmarks/repro_conv_backward_crash.py). Use a "
                f"model.width of 8 or more, or train.compile=false")
    backbone.compile(**COMPILE_OPTIONS)


def sparsity_spec(cfg: Config, clock: Clock) -> SparsitySpec:
    """The `[sparsity]` section as a `SparsitySpec`, its windows in optimizer steps (the one
    builder: `synccp.specs.SparsitySettings.spec`)."""
    return cfg.sparsity.spec(epochs=cfg.train.epochs, steps_per_epoch=clock.steps_per_epoch,
                             total_steps=clock.total_steps, seed=cfg.train.seed)


def build_sparsifier(cfg: Config, method: SSLMethod, clock: Clock) -> Sparsifier:
    """The run's Sparsifier over the backbone's prunable weights (and the target's); gradients
    are masked by the step, not by hooks (under DDP a hook would see unaveraged gradients)."""
    target = None if method.shared_encoder else prunable_parameters(method.target_backbone)
    return Sparsifier(prunable_parameters(method.backbone), sparsity_spec(cfg, clock),
                      target=target, hooks=False)


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
    t = cfg.train
    method = sync_batchnorm(method, device, enabled=t.sync_bn).to(device)
    runtime = make_runtime(t.precision, device)
    if runtime.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if t.compile:
        compile_backbone(method.backbone, device)
    optimizer = build_optimizer(t.optimizer, [method], lr=t.lr, momentum=t.momentum,
                                weight_decay=t.weight_decay, eta=t.eta)
    return TrainingSetup(
        data=data, batches=_batches(cfg, data, method, device, clock, rank, world), method=method,
        optimizer=optimizer, sparsifier=build_sparsifier(cfg, method, clock), clock=clock,
        schedules=StepSchedules(total_steps=clock.total_steps,
                                warmup_steps=round(t.warmup_epochs * clock.steps_per_epoch),
                                base_lr=scaled_lr(t.lr, t.batch_size), min_lr=t.min_lr,
                                base_tau=cfg.method.base_tau, final_tau=cfg.method.final_tau),
        runtime=runtime, replica=replicate(method, device),
        norm_branch=cfg.sparsity.sparse_branch if method.branch_norms is not None else None)


def _batches(cfg: Config, data: ImageDataset | StreamingDataset, method: SSLMethod,
             device: torch.device, clock: Clock, rank: int, world: int) -> ViewStream:
    """The data stream of this rank: images on the device (or streamed), views per the method."""
    t = cfg.train
    whole = t.global_augment and world > 1
    streamed = isinstance(data, StreamingDataset)
    return ViewStream(
        images=None if streamed else data.images.to(device),
        stream=_stream(cfg, data, device, clock, rank, world) if streamed else None,
        mean=data.mean, std=data.std,
        recipes=view_recipes(cfg.method.name, image_size=data.image_size, channels=data.channels),
        generator=torch.Generator(device).manual_seed(
            t.seed if t.global_augment else augmentation_seed(t.seed, rank)),
        seed=t.seed, batch_size=t.batch_size, steps_per_epoch=clock.steps_per_epoch, rank=rank,
        world_size=world, global_augment=whole, swap=method.shared_encoder)


def _stream(cfg: Config, data: StreamingDataset, device: torch.device, clock: Clock, rank: int,
            world: int) -> StreamBatches:
    """The batches of a streamed dataset in `TrainingSetup.batch`'s order, for this rank."""
    batch, whole = cfg.train.batch_size, cfg.train.global_augment and world > 1
    return StreamBatches(data, device=device, seed=cfg.train.seed, batch_size=batch,
                         take=batch if whole else batch // world,
                         offset=0 if whole else rank * (batch // world),
                         steps_per_epoch=clock.steps_per_epoch, workers=cfg.data.workers)
