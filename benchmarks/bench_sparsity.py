"""Sparsifier cost: one mask update, and a masked training step vs a dense one.

Part 1 — mask update: wall time of one `update_` (new masks for every layer, zeroing of weights
and SGD momentum, metrics with its host sync) on a ResNet backbone (CIFAR stem), momentum path
(online θ and an EMA target ξ, BYOL's default), per algorithm × granularity, mid-ramp. RigL and
GraNet include `capture_` of the dense gradient. Reported as the median and as the share of
training time at the default cadence: update / (update_every × masked step time).

Part 2 — training step: forward + backward + SGD step of the backbone on two views
(a loss on the pooled features; no heads), dense vs masked, for
  - the shared-encoder path (SimCLR/Barlow/SimSiam) through the public API: θ⊙M_A and θ⊙M_B via
    `Sparsifier.encoder`, gradients masked by its hooks, `step()` on a non-update step;
  - `dense` run through the Sparsifier (must cost nothing);
  - the momentum path (BYOL/MoCo): online fwd/bwd on both views, target forward under no_grad,
    `step(tau)`: mask update, EMA update, re-mask.
Masks are SyncCP's at density 0.1 (online) / 0.2 (second), unstructured, global threshold.
Paths run interleaved (rotating order) so background load hits all alike; warm-up excluded;
medians over repeats. Usage (docs/sparsity.md has the numbers and the exact command):

    .venv/bin/python benchmarks/bench_sparsity.py --batch 8,64 --repeats 5
    .venv/bin/python benchmarks/bench_sparsity.py --models resnet18 --selection-ab --repeats 4
    .venv/bin/python benchmarks/bench_sparsity.py --device cuda --batch 256
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from synccp.config import SparsityConfig
from synccp.models import build_backbone, ema_update_, frozen_copy, prunable_parameters
from synccp.sparsity import topk
from synccp.sparsity.sparsifier import Sparsifier
from synccp.sparsity.topk import kth_largest

UPDATE_CASES = (("synccp", "unstructured"), ("synccp", "nm"), ("synccp", "block"),
                ("synccp", "channel"), ("gmp", "unstructured"), ("sdclr", "unstructured"),
                ("rigl", "unstructured"), ("granet", "unstructured"), ("granet", "nm"))
NEVER = 10**9  # a ramp that never fires during the step benchmark


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sparsifier_for(backbone, target, *, algorithm: str, granularity: str, every: int, start: int,
                   initial: float, density: float = 0.1, optimizer=None,
                   hooks: bool = True) -> Sparsifier:
    """The public Sparsifier over the backbone (its default prunable weights: all but the stem)."""
    return Sparsifier(backbone, target=target, optimizer=optimizer, hooks=hooks,
                      algorithm=algorithm, granularity=granularity, density=density,
                      initial_density=initial, update_every=every, ramp_start_step=start,
                      ramp_end_step=NEVER if start else NEVER // 2, steps_per_epoch=every,
                      total_steps=NEVER, seed=0)


def time_updates(name: str, width: int, device: torch.device, *, algorithm: str, granularity: str,
                 warmup: int, repeats: int) -> float:
    """Median seconds of one mask update (every step is an update step here)."""
    backbone = build_backbone(name, stem="cifar", width=width, in_channels=3).to(device)
    target = frozen_copy(backbone)
    # hooks=False: the update alone is timed
    sparsifier = sparsifier_for(backbone, target, algorithm=algorithm, granularity=granularity,
                                every=1, start=0, initial=0.5, hooks=False)
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.01, momentum=0.9)
    for p in backbone.parameters():  # momentum buffers to zero, like a real run
        optimizer.state[p]["momentum_buffer"] = torch.zeros_like(p)
    times = []
    for step in range(1, warmup + repeats + 1):
        for p in prunable_parameters(backbone).values():
            p.grad = torch.randn_like(p)
        sync(device)
        start = time.perf_counter()
        sparsifier.capture_(step)
        record = sparsifier.update_(step, optimizer)
        sync(device)
        times.append(time.perf_counter() - start)
        assert record is not None
    return statistics.median(times[warmup:])


def _step_paths(name: str, width: int, device: torch.device, channels_last: bool) -> dict:
    """Callables for one training step of each path, each with its own model and optimizer."""
    def model():
        torch.manual_seed(0)
        net = build_backbone(name, stem="cifar", width=width, in_channels=3).to(device)
        return net.to(memory_format=torch.channels_last) if channels_last else net

    def sgd(net):
        return torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-5)

    paths = {}
    for label, algorithm in (("shared dense", None), ("shared synccp", "synccp"),
                             ("shared via Sparsifier(dense)", "dense")):
        net = model()
        optimizer = sgd(net)
        sp = None if algorithm is None else sparsifier_for(net, None, algorithm=algorithm,
                                                           granularity="unstructured", every=50,
                                                           start=NEVER, initial=0.1,
                                                           optimizer=optimizer)
        paths[label] = _shared_step(net, optimizer, sp)
    for label, algorithm in (("momentum dense", None), ("momentum synccp", "synccp")):
        net = model()
        target = frozen_copy(net)
        optimizer = sgd(net)
        sp = None if algorithm is None else sparsifier_for(net, target, algorithm=algorithm,
                                                           granularity="unstructured", every=50,
                                                           start=NEVER, initial=0.1,
                                                           optimizer=optimizer)
        paths[label] = _momentum_step(net, target, optimizer, sp)
    return paths


def _shared_step(net, optimizer, sparsifier):
    """A SimCLR-like step: view A through θ⊙M_A, view B through θ⊙M_B (`Sparsifier.encoder`),
    gradients masked by the Sparsifier's hooks, one `step()` after the optimizer's."""
    def run(a, b):
        online = net if sparsifier is None else sparsifier.encoder("online")
        second = net if sparsifier is None else sparsifier.encoder("second")
        loss = (online(a) - second(b)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sparsifier is not None:
            sparsifier.step()
    return run


def _momentum_step(net, target, optimizer, sparsifier):
    """A BYOL-like step; `step(tau)` does the mask update, the EMA update and the re-mask."""
    def run(a, b):
        online_a, online_b = net(a), net(b)
        with torch.no_grad():
            target_a, target_b = target(a), target(b)
        loss = (online_a - target_b).pow(2).mean() + (online_b - target_a).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if sparsifier is None:
            ema_update_(target, net, 0.99)
        else:
            sparsifier.step(0.99)
    return run


def time_steps(name: str, width: int, device: torch.device, *, batch: int, size: int, warmup: int,
               repeats: int, channels_last: bool) -> dict[str, float]:
    """Median seconds per training step of each path, interleaved round-robin."""
    paths = _step_paths(name, width, device, channels_last)
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(batch, 3, size, size, generator=generator).to(device) for _ in range(2)]
    if channels_last:
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    times: dict[str, list[float]] = {label: [] for label in paths}
    labels = list(paths)
    for repeat in range(warmup + repeats):
        shift = repeat % len(labels)
        for label in labels[shift:] + labels[:shift]:
            sync(device)
            start = time.perf_counter()
            paths[label](*views)
            sync(device)
            if repeat >= warmup:
                times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def time_selection(numel: int, density: float, device: torch.device, *,
                   repeats: int) -> dict[str, float]:
    """Median seconds of the global threshold over `numel` scores: `kth_largest` vs kthvalue."""
    scores = torch.rand(numel, generator=torch.Generator().manual_seed(0)).to(device)
    count = round(density * numel)
    ways = {"kth_largest": lambda: kth_largest(scores, count),
            "kthvalue": lambda: scores.kthvalue(numel - count + 1).values}
    assert ways["kth_largest"]().item() == ways["kthvalue"]().item()
    times: dict[str, list[float]] = {label: [] for label in ways}
    for _ in range(repeats):
        for label, way in ways.items():
            sync(device)
            start = time.perf_counter()
            way()
            sync(device)
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def time_updates_by_selection(name: str, width: int, device: torch.device, *, algorithm: str,
                              granularity_name: str, warmup: int, repeats: int) -> dict[str, float]:
    """Before/after in one process: the mask update with `keep_top`'s threshold from `kth_largest`
    (now) and from plain `kthvalue` (before), alternating rounds so background load hits both."""
    def plain(flat, count):
        return flat.kthvalue(flat.numel() - count + 1).values

    ways = {"kth_largest": kth_largest, "kthvalue": plain}
    times: dict[str, list[float]] = {label: [] for label in ways}
    try:
        for round_ in range(repeats):
            for label in (list(ways) if round_ % 2 == 0 else list(ways)[::-1]):
                topk.kth_largest = ways[label]
                times[label].append(time_updates(name, width, device, algorithm=algorithm,
                                                 granularity=granularity_name, warmup=warmup,
                                                 repeats=3))
    finally:
        topk.kth_largest = kth_largest
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", default="32", help="images per view in the step benchmark; a "
                        "comma list runs each (the update shares are given for every one)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--update-every", type=int, default=SparsityConfig().update_every)
    parser.add_argument("--skip-updates", action="store_true")
    parser.add_argument("--selection-ab", action="store_true", help="only: mask-update time with "
                        "the threshold from kth_largest vs plain kthvalue, interleaved in one "
                        "process")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    channels_last = device.type == "cuda"
    batches = [int(b) for b in args.batch.split(",")]
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"device {device}, threads {torch.get_num_threads()}, width {args.width}, "
          f"batch {batches}×2 views, {args.image_size}×{args.image_size}, "
          f"median of {args.repeats} (warm-up {args.warmup}), update_every {args.update_every}")
    if args.selection_ab:
        for name in args.models.split(","):
            print(f"\n{name}: one mask update (median s of {args.repeats} alternating rounds), "
                  f"threshold by")
            for algorithm, granularity_name in (("synccp", "unstructured"),
                                                ("granet", "unstructured"), ("granet", "nm")):
                cost = time_updates_by_selection(name, args.width, device, algorithm=algorithm,
                                                 granularity_name=granularity_name,
                                                 warmup=args.warmup, repeats=args.repeats)
                print(f"  {algorithm:7s} {granularity_name:13s} "
                      f"kth_largest {cost['kth_largest']:.4f} s   "
                      f"kthvalue {cost['kthvalue']:.4f} s   "
                      f"(×{cost['kthvalue'] / cost['kth_largest']:.2f})")
        return
    if not args.skip_updates:
        cost = time_selection(11_000_000, 0.1, device, repeats=args.repeats)
        print(f"\nglobal threshold over 11 M scores (ResNet-18), keep 10%: "
              f"kth_largest {cost['kth_largest']:.4f} s, kthvalue {cost['kthvalue']:.4f} s "
              f"(×{cost['kthvalue'] / cost['kth_largest']:.2f})")
    for name in args.models.split(","):
        step_times = {}
        for batch in batches:
            steps = time_steps(name, args.width, device, batch=batch, size=args.image_size,
                               warmup=args.warmup, repeats=args.repeats,
                               channels_last=channels_last)
            print(f"\n{name}, batch {batch}: training step (median s), ratio to the dense step of "
                  f"the same path")
            for label, value in steps.items():
                base = steps["momentum dense" if label.startswith("momentum") else "shared dense"]
                print(f"  {label:32s} {value:9.4f} s   ×{value / base:.3f}")
            step_times[batch] = steps["momentum synccp"]
        if args.skip_updates:
            continue
        shares = ", ".join(f"batch {b}: {args.update_every} × {t:.4f} s"
                           for b, t in step_times.items())
        print(f"{name}: one mask update, momentum path (median s); share = update / "
              f"(update_every × masked momentum step) for {shares}")
        for algorithm, granularity in UPDATE_CASES:
            cost = time_updates(name, args.width, device, algorithm=algorithm,
                                granularity=granularity, warmup=args.warmup,
                                repeats=max(3, args.repeats // 2))
            share = "  ".join(f"{100 * cost / (args.update_every * t):5.2f} %"
                              for t in step_times.values())
            print(f"  {algorithm:7s} {granularity:13s} {cost:9.4f} s   {share}")


if __name__ == "__main__":
    main()
