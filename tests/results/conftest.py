"""Fabricated run directories with real contents (no training), as pretrain/eval/cost write."""

import dataclasses
import json
import math

import pytest

from synccp.config import Config, config_to_dict

# ResNet-18 (CIFAR stem) at width 16: prunable weights and their sizes (the stem conv is excluded).
LAYERS = {}
for stage, (cin, cout) in enumerate([(16, 16), (16, 32), (32, 64), (64, 128)], start=1):
    for block in range(2):
        first_in = cin if block == 0 else cout
        LAYERS[f"layer{stage}.{block}.conv1.weight"] = cout * first_in * 9
        LAYERS[f"layer{stage}.{block}.conv2.weight"] = cout * cout * 9
        if block == 0 and stage > 1:
            LAYERS[f"layer{stage}.{block}.downsample.0.weight"] = cout * cin
RAW = {"knn_top1": 85.61, "linear_top1": 84.27, "linear_train_top1": 88.0}


def _config(*, method, algorithm, granularity, density, gap, ema, seed, n, m, epochs, start, end):
    cfg = Config()
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, subset=5000),
        model=dataclasses.replace(cfg.model, width=16),
        method=dataclasses.replace(cfg.method, name=method),
        train=dataclasses.replace(
            cfg.train, epochs=float(epochs), batch_size=128, seed=seed, progress=False
        ),
        sparsity=dataclasses.replace(
            cfg.sparsity,
            algorithm=algorithm,
            granularity=granularity,
            density=density,
            density_gap=gap,
            score_ema=ema,
            n=n,
            m=m,
            update_every=10,
            start_epoch=float(start),
            end_epoch=float(end),
        ),
    )
    return config_to_dict(cfg)


def _layer_densities(total):
    """Global-threshold-like allocation: small early layers stay denser; mean weighted = total."""
    if total >= 1.0:
        return {name: 1.0 for name in LAYERS}
    raw = {name: min(1.0, total * (40000 / size) ** 0.35) for name, size in LAYERS.items()}
    scale = total * sum(LAYERS.values()) / sum(raw[n] * LAYERS[n] for n in LAYERS)
    return {name: round(min(1.0, d * scale), 4) for name, d in raw.items()}


def _schedule(algorithm, density, epoch, start, end):
    if algorithm == "dense":
        return 1.0
    if algorithm in ("static", "sdclr", "rigl") or epoch >= end:
        return density
    if epoch <= start:
        return 1.0
    phi = (epoch - start) / (end - start)
    return density + (1.0 - density) * (1 - phi) ** 3


def _flip(algorithm, before, after, epoch, start, end, seed):
    """Flip rate of one update: pruning removes (before-after)/before; regrowth adds swaps."""
    pruned = max(before - after, 0.0) / before
    phase = min(max((epoch - start) / (end - start), 0.0), 1.0)
    regrow = (
        {"rigl": 0.3, "granet": 0.12}.get(algorithm, 0.0) * 0.5 * (1 + math.cos(math.pi * phase))
    )
    reprune = 0.004 if algorithm == "sdclr" and abs(epoch - round(epoch)) < 0.13 else 0.0
    return (pruned + 2 * regrow + reprune) * (1 + 0.05 * seed)


def _updates(algorithm, density, gap, *, epochs, steps_per_epoch, start, end, seed):
    records, previous = [], None
    for step in range(0, epochs * steps_per_epoch + 1, 10):
        epoch = step / steps_per_epoch
        if step and (algorithm in ("dense", "static") or epoch > end):
            break
        online = _schedule(algorithm, density, epoch, start, end)
        second = {"synccp": min(1.0, online + gap), "sdclr": 1.0}.get(algorithm, online)
        iou = {"synccp": online / second, "sdclr": online, "gmp": 1.0, "dense": 1.0}.get(
            algorithm, 0.8
        )
        record = {
            "kind": "mask_update",
            "step": step,
            "epoch": epoch,
            "density": {
                "online": {"total": online, "layers": _layer_densities(online)},
                "second": {"total": second, "layers": _layer_densities(second)},
            },
            "oscillation": {"online_vs_second_iou": {"total": iou, "layers": {}}},
        }
        if previous is not None:
            flips = {
                branch: _flip(algorithm, previous[i], now, epoch, start, end, seed)
                for i, (branch, now) in enumerate((("online", online), ("second", second)))
            }
            for branch, flip in flips.items():
                record["oscillation"][branch] = {
                    "total": {"flip_rate": flip, "iou": 1 / (1 + flip), "hamming": 1 - flip * 0.1},
                    "layers": {},
                }
        previous = (online, second)
        records.append(record)
    return records


def fake_run(
    path,
    *,
    method="byol",
    algorithm="synccp",
    granularity="unstructured",
    density=0.1,
    gap=0.1,
    ema=0.0,
    seed=0,
    n=2,
    m=4,
    knn=80.0,
    linear=82.0,
    cost=True,
    evaluated=True,
    finished=True,
    epochs=8,
    start=1,
    end=6,
    steps_per_epoch=39,
):
    """Write a run directory as pretrain (+ eval, + cost) leave it; returns its path."""
    path.mkdir(parents=True, exist_ok=True)
    final = n / m if granularity == "nm" and algorithm != "dense" else density
    config = _config(
        method=method,
        algorithm=algorithm,
        granularity=granularity,
        density=density,
        gap=gap,
        ema=ema,
        seed=seed,
        n=n,
        m=m,
        epochs=epochs,
        start=start,
        end=end,
    )
    (path / "config.json").write_text(json.dumps(config, indent=2))
    updates = _updates(
        algorithm,
        final,
        gap,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        start=start,
        end=end,
        seed=seed,
    )
    trains = [
        {
            "kind": "train",
            "step": s,
            "epoch": s / steps_per_epoch,
            "loss": 1.0 / (1 + s / 50),
            "lr": 0.5,
            "images_per_s": 290.0,
        }
        for s in range(10, epochs * steps_per_epoch + 1, 10)
    ]
    (path / "metrics.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in sorted(updates + trains, key=lambda r: (r["step"], r["kind"] == "train"))
        )
    )
    if not finished:
        return path
    last = updates[-1]["density"]
    summary = {
        "total_steps": epochs * steps_per_epoch,
        "steps_per_epoch": steps_per_epoch,
        "epochs": epochs,
        "train_images": 4992,
        "final_loss": trains[-1]["loss"],
        "wall_s_last_process": 130.0 + seed,
        "device": "cpu",
        "torch": "2.13.0",
        "sparsity": {"online": last["online"], "second": last["second"]},
    }
    (path / "summary.json").write_text(json.dumps(summary))
    if evaluated:
        result = {
            "encoder": {"knn_top1": knn, "linear_top1": linear, "linear_train_top1": linear + 3},
            "raw_pixels": RAW,
            "online_density": last["online"]["total"],
        }
        (path / "eval.json").write_text(json.dumps(result))
    if cost:
        mean_density = sum(u["density"]["online"]["total"] for u in updates) / len(updates)
        dense_macs = 2.5e13
        sparse = (
            dense_macs
            if algorithm == "dense"
            else dense_macs * (0.35 + 0.65 * (0.3 * mean_density + 0.7 * last["online"]["total"]))
        )
        speedup = 1.0 if algorithm == "dense" else 0.8 * dense_macs / sparse
        (path / "cost.json").write_text(
            json.dumps(
                {  # the layout synccp.cost.report writes
                    "totals": {
                        "sparse": {"macs": sparse, "cycles": 1e9 / speedup},
                        "dense": {"macs": dense_macs, "cycles": 1e9},
                    },
                    "speedup": {
                        "cycles": speedup,
                        "energy": speedup * 1.1,
                        "macs": dense_macs / sparse,
                    },
                }
            )
        )
    return path


ACCURACY = {
    "dense": 86.0,
    "static": 80.5,
    "gmp": 83.0,
    "sdclr": 81.5,
    "rigl": 82.0,
    "granet": 82.6,
    "synccp": 84.0,
}


def build_study(root):
    """A claim-(c)-like study: BYOL with every algorithm at 3 unstructured densities, 2:4 and
    block 4x4; SimCLR with dense / granet / synccp at 0.1; two seeds each."""
    cells = [("byol", "dense", "unstructured", 0.1)]
    for algorithm in ("static", "gmp", "sdclr", "rigl", "granet", "synccp"):
        cells += [("byol", algorithm, "unstructured", d) for d in (0.2, 0.1, 0.05)]
        cells += [("byol", algorithm, "nm", 0.5), ("byol", algorithm, "block", 0.25)]
    cells += [("simclr", a, "unstructured", 0.1) for a in ("dense", "granet", "synccp")]
    for method, algorithm, granularity, density in cells:
        for seed in (0, 1):
            drop = (
                0
                if algorithm == "dense"
                else 12 * (0.2 - min(density, 0.2)) + (1 if granularity != "unstructured" else 0)
            )
            linear = ACCURACY[algorithm] - drop - (2.0 if method == "simclr" else 0) + 0.4 * seed
            name = f"{method}_{algorithm}_{granularity}_d{density}_s{seed}"
            fake_run(
                root / name,
                method=method,
                algorithm=algorithm,
                granularity=granularity,
                density=density,
                seed=seed,
                linear=round(linear, 2),
                knn=round(linear - 1.5, 2),
            )
    return root


@pytest.fixture(scope="session")
def make_run():
    return fake_run


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    return build_study(tmp_path_factory.mktemp("study") / "runs")
