"""The CUDA path: bf16 autocast, channels_last, SyncBatchNorm under a 1-process nccl torchrun,
pruned weights exactly zero after bf16 steps, an exact resume, streamed batches into the GPU.

Marked `cuda`: deselected by default (pyproject's `-m "not cuda"`), run by
`benchmarks/gpu_check.sh` with `-m cuda`. `SYNCCP_TEST_DEVICE=cpu` runs the same tests on the
CPU (gloo instead of nccl): that is the script's `--dry-run`, which checks the tests themselves.

This file is also the torchrun worker of the SyncBatchNorm test:
`torchrun ... tests/test_cuda.py OUT ROOT`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import tiny_overrides, write_image_folder

pytestmark = [pytest.mark.cuda, pytest.mark.filterwarnings("ignore::UserWarning")]
DEVICE = torch.device(os.environ.get("SYNCCP_TEST_DEVICE", "cuda"))
HERE = Path(__file__).resolve()


@pytest.fixture(autouse=True)
def _deterministic():
    """cuDNN's deterministic kernels, so that two runs of the same steps agree bit for bit."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _overrides(root, **extra) -> list[str]:
    values = {
        "train.device": f'"{DEVICE.type}"',
        "train.precision": '"bf16"',
        "model.width": 8,
        "sparsity.algorithm": '"synccp"',
        "sparsity.density": 0.3,
        **extra,
    }
    return tiny_overrides(root, **values)


def _run(cfg, setup) -> None:
    """Every step of the run (the trainer's step; loop._run_steps without logs or checkpoints)."""
    from synccp.train.step import train_step

    for step in range(setup.clock.total_steps):
        loss, _ = train_step(setup, step)
        assert torch.isfinite(loss), step


@pytest.mark.parametrize("method", ["byol", "simclr"])
def test_bf16_channels_last_steps_leave_pruned_weights_exactly_zero(fmnist_root, method):
    from synccp.config import load_config
    from synccp.train.setup import build_setup

    cfg = load_config(None, _overrides(fmnist_root, **{"method.name": f'"{method}"'}))
    setup = build_setup(cfg, DEVICE)
    assert (
        setup.runtime.bf16
        and setup.runtime.channels_last
        and setup.runtime.device.type == DEVICE.type
    )
    convs = [p for p in setup.method.backbone.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    dtypes = []
    first_conv = next(m for m in setup.method.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    _run(cfg, setup)
    hook.remove()
    assert set(dtypes) == {torch.bfloat16}  # autocast ran the convolutions in bf16
    masks = setup.sparsifier.masks()
    assert setup.sparsifier.summary()["online"]["total"] < 0.5  # the ramp pruned
    branches = {"online": setup.method.backbone}
    if not setup.method.shared_encoder:
        branches["second"] = setup.method.target_backbone
    for branch, module in branches.items():  # shared encoder: θ is zero outside M_second ⊇ M_online
        key = "second" if setup.method.shared_encoder else branch
        weights = dict(module.named_parameters())
        for name, weight in weights.items():
            mask = masks.get(f"{key}/{name}")
            if mask is not None:
                assert weight.dtype == torch.float32  # masters stay fp32 under autocast
                assert int(weight.detach().cpu()[~mask].count_nonzero()) == 0, (branch, name)


def test_resume_on_the_device_is_exact(fmnist_root, tmp_path):
    from synccp.config import load_config
    from synccp.train.loop import pretrain

    cfg = load_config(None, _overrides(fmnist_root, **{"train.epochs": 3}))
    whole = pretrain(cfg, tmp_path / "whole")
    assert whole["device"].startswith(DEVICE.type)
    assert pretrain(cfg, tmp_path / "cut", stop_after=7) == {"stopped_at": 7}
    pretrain(cfg, tmp_path / "cut", resume=True)
    for name in ("model.safetensors", "masks.safetensors"):
        one, two = (load_file(str(tmp_path / d / name)) for d in ("whole", "cut"))
        assert [k for k in one if not torch.equal(one[k], two[k])] == [], name


def test_streamed_batches_arrive_on_the_device_pinned_and_equal(tmp_path, monkeypatch):
    from synccp.data.loader import StreamBatches
    from synccp.data.stream import load_stream

    monkeypatch.setenv("SYNCCP_CACHE", str(tmp_path / "cache"))
    write_image_folder(tmp_path / "f", ["a", "b"], per_class=12, size=(40, 30))
    data = load_stream("image_folder", "train", root=str(tmp_path / "f"), image_size=32)
    kwargs = dict(seed=0, batch_size=8, take=8, offset=0, steps_per_epoch=3, workers=2)
    device, host = (StreamBatches(data, device=d, **kwargs) for d in (DEVICE, torch.device("cpu")))
    for step in (0, 1, 2, 3, 1):
        batch = device.batch(step)
        assert batch.device.type == DEVICE.type and batch.dtype == torch.uint8
        assert torch.equal(batch.cpu(), host.batch(step)), step
    assert device._loader(first=0).pin_memory == (DEVICE.type == "cuda")


def test_sync_batchnorm_under_a_one_process_torchrun(fmnist_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        str(HERE),
        str(out),
        str(fmnist_root),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == ("nccl" if DEVICE.type == "cuda" else "gloo")
    if DEVICE.type != "cuda":  # the --dry-run: torch's SyncBatchNorm has no CPU kernel
        assert "train.sync_bn=true needs CUDA" in result["error"]
        return
    assert result["sync_bn_layers"] > 0 and result["plain_bn_layers"] == 0
    # one process: SyncBatchNorm normalizes by the same batch statistics as BatchNorm
    assert result["max_relative_difference"] < 1e-2, result


def _worker(out: Path, root: Path) -> None:
    """One process of a torchrun of one: open the group, train with and without train.sync_bn."""
    import torch.distributed as dist

    from synccp import distributed
    from synccp.config import load_config
    from synccp.train.setup import build_setup

    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    backend = "nccl" if DEVICE.type == "cuda" else "gloo"
    if DEVICE.type == "cuda":
        torch.cuda.set_device(distributed.local_rank())
    dist.init_process_group(backend=backend)
    states = []
    for sync_bn in ("true", "false"):
        cfg = load_config(
            None,
            _overrides(
                root, **{"train.sync_bn": sync_bn, "train.epochs": 1, "sparsity.end_epoch": 0.75}
            ),
        )
        try:
            setup = build_setup(cfg, DEVICE)
        except ValueError as err:
            (out / "result.json").write_text(json.dumps({"backend": backend, "error": str(err)}))
            break
        kinds = [type(m) for m in setup.method.modules()]
        counts = (kinds.count(torch.nn.SyncBatchNorm), kinds.count(torch.nn.BatchNorm2d))
        _run(cfg, setup)
        states.append(
            (
                counts,
                {
                    k: v.float().cpu()
                    for k, v in setup.method.backbone.state_dict().items()
                    if v.is_floating_point()
                },
            )
        )
    if len(states) == 2:
        (sync_counts, synced), (_, plain) = states
        worst = max(
            float((synced[k] - plain[k]).norm() / plain[k].norm().clamp_min(1e-6)) for k in plain
        )
        (out / "result.json").write_text(
            json.dumps(
                {
                    "backend": backend,
                    "sync_bn_layers": sync_counts[0],
                    "plain_bn_layers": sync_counts[1],
                    "max_relative_difference": worst,
                }
            )
        )
    dist.destroy_process_group()
    distributed.end_worker(0)  # as the CLI does under torchrun: no interpreter teardown


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
