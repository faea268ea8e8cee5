"""Thin helpers over `torch.distributed`; every function is the identity on a single process.

The training loop runs under `torchrun` (PyTorch's own launcher) with DistributedDataParallel:
`process_group` opens the group torchrun describes in the environment, the rest are the few
collectives the loop needs besides DDP's gradient all-reduce (gathering negatives, running one
rank's file I/O for everybody, checking that the replicas agree bit for bit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class RankZeroError(RuntimeError):
    """Raised on the other ranks when a step that rank 0 runs for everybody failed there.

    Rank 0 raises (and reports) the original error; the CLI stays quiet about this one."""


def is_distributed() -> bool:
    """True inside an initialized process group (torchrun + `init_process_group`)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def launched_world_size() -> int:
    """The number of processes torchrun started (`WORLD_SIZE`; 1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """This process's index on its machine (`LOCAL_RANK`; 0 outside torchrun): its CUDA device."""
    return _env_int("LOCAL_RANK", 0)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from err


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[None]:
    """Open torchrun's process group for the block (gloo on CPU, nccl on CUDA); no-op otherwise.

    `device` is `train.device`. On CUDA each process uses the GPU `LOCAL_RANK`. Nothing happens
    when a group already exists (the caller owns it) or when torchrun started one process.
    """
    if is_distributed() or launched_world_size() <= 1:
        yield
        return
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        count = torch.cuda.device_count()
        if local_rank() >= count:
            raise ValueError(
                f"train.device={device!r}: process LOCAL_RANK={local_rank()} needs a GPU, "
                f"but this machine has {count}; start at most {count} processes per node"
            )
        torch.cuda.set_device(local_rank())
    if cuda:
        dist.init_process_group(backend="nccl", device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group(backend="gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def end_worker(code: int) -> NoReturn:
    """End a torchrun worker process now with `code`, skipping the interpreter's teardown.

    DistributedDataParallel keeps the gloo process group alive past `destroy_process_group` (its
    C++ side holds the backend: the gloo threads survive `del model` + `gc.collect()`, measured
    on torch 2.13), and at interpreter exit those threads are torn down in an order that aborts
    the process ("terminate called without an active exception", exit -6) in about 1 run in 10,
    after all the work is done, so torchrun reports a finished run as failed (repro and numbers
    in docs/reliability.md). Call this once everything is written; it flushes logs and stdio.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def gather(x: torch.Tensor) -> torch.Tensor:
    """All ranks' `x` concatenated along dim 0, rank order, without gradient: (W·B, ...)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice.

    Each rank's loss uses the other ranks' samples (e.g. as negatives), so the gradient of the
    global loss w.r.t. the local slice has a term from every rank: backward all-reduces the
    gradient of the gathered tensor and returns this rank's slice. With DDP's gradient averaging
    this gives exactly the single-process gradient of the loss averaged over the global batch.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)  # (W·B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        size = grad.shape[0] // world_size()
        return grad[rank() * size : (rank() + 1) * size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' `x` concatenated along dim 0 (rank order), differentiable w.r.t. the local `x`.

    Every rank must pass the same shape. Returns `x` itself when not distributed.
    """
    if world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


# ----------------------------------------------------------------- collectives of the training loop
def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def any_rank(flag: torch.Tensor) -> bool:
    """True when `flag` (a bool 0-d tensor) is true on any rank: one tiny all-reduce, one sync."""
    if world_size() == 1:
        return bool(flag)
    value = flag.to(torch.int32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_min(value: torch.Tensor) -> int:
    """The minimum over ranks of an integer 0-d tensor: one tiny all-reduce, one host sync."""
    if world_size() == 1:
        return int(value)
    smallest = value.to(torch.int64).reshape(1).clone()
    dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
    return int(smallest.item())


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a float 0-d tensor (e.g. each rank's loss on its share of a batch)."""
    if world_size() == 1:
        return value
    total = value.detach().float().reshape(1).clone()
    dist.all_reduce(total)
    return total[0] / world_size()


def all_gather_object(obj: T) -> list[T]:
    """Every rank's picklable `obj`, in rank order."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T) -> T:
    """Rank 0's picklable `obj` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj if rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_rank_zero(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result to every rank (a barrier as well).

    When `fn` raises, rank 0 raises that error and the other ranks a `RankZeroError` naming it,
    so nobody waits forever in a later collective. Used for the run directory's file I/O."""
    if world_size() == 1:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if rank() == 0:
        try:
            outcome = (True, fn())
        except Exception as err:  # re-raised below on rank 0, reported on the others
            outcome = (False, err)
    ok, value = broadcast_object(outcome if rank() == 0 else None)
    if rank() == 0 and not ok:
        raise outcome[1]
    if not ok:
        raise RankZeroError(f"rank 0 failed: {type(value).__name__}: {value}")
    return value


@torch.no_grad()
def broadcast_tensors_(tensors: Sequence[torch.Tensor]) -> None:
    """Overwrite `tensors` (same shapes on every rank) with rank 0's values, in place."""
    if world_size() == 1:
        return
    for tensor in tensors:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def first_mismatch(named: Sequence[tuple[str, torch.Tensor]]) -> str | None:
    """Compare every rank's tensors with rank 0's bit for bit; the first differing name, else None.

    The tensors are packed into one byte buffer per call, so this is one broadcast of their
    total size plus one all-reduce. Every rank gets the same answer (the lowest differing index
    over all ranks)."""
    if world_size() == 1 or not named:
        return None
    device = named[0][1].device
    chunks = [t.detach().contiguous().reshape(-1).view(torch.uint8) for _, t in named]
    sizes = [c.numel() for c in chunks]
    mine = torch.cat([c.to(device) for c in chunks])  # (total bytes,)
    theirs = mine.clone()
    dist.broadcast(theirs, src=0)
    flags = torch.stack(
        [a.ne(b).any() for a, b in zip(mine.split(sizes), theirs.split(sizes), strict=True)]
    )  # (T,)
    index = torch.where(flags, torch.arange(len(sizes), device=device), len(sizes)).min().reshape(1)
    dist.all_reduce(index, op=dist.ReduceOp.MIN)
    found = int(index.item())
    return named[found][0] if found < len(named) else None
