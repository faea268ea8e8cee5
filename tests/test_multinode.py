"""Multi-node torchrun for real on one machine: two "nodes", each its own
`torchrun --nnodes=2 --node_rank=N --rdzv-backend=c10d --rdzv-endpoint=127.0.0.1:PORT` agent with
one gloo process, meeting through the c10d rendezvous exactly as two machines would.

1. The replicas are bitwise identical and match one process at the same global batch (the
   worker and tolerances of test_distributed.py, BatchNorm on running statistics).
2. A real run through the CLI: one node is SIGKILLed mid-run (after its first checkpoint), the
   other node's process fails instead of hanging, both are started again with `--resume`, and the
   result equals, bit for bit, the same run uninterrupted on one node with two processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import test_distributed as single_node
from helpers import tiny_overrides

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]
RUN = {
    "method.name": '"byol"',
    "sparsity.algorithm": '"synccp"',
    "train.epochs": 8,
    "method.pred_hidden_dim": 16,
    "sparsity.end_epoch": 5,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(node: int | None, port: int, *args: str, log: Path) -> subprocess.Popen:
    """One node's torchrun agent (its own process group, so a kill takes the node down whole);
    `node=None` is a single-node two-process launch."""
    launch = (
        ["--standalone", "--nproc_per_node=2"]
        if node is None
        else [
            "--nnodes=2",
            f"--node_rank={node}",
            "--nproc_per_node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}",
            f"--rdzv-id=synccp-{port}",
            "--local-addr=127.0.0.1",
            "--max-restarts=0",
        ]
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", *launch, *args],
            env=single_node._env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _nodes(port: int, *args: str, logs: Path) -> list[subprocess.Popen]:
    return [_torchrun(node, port, *args, log=logs / f"node{node}.txt") for node in (0, 1)]


def _wait(procs: list[subprocess.Popen], logs: Path, timeout: float = 240) -> list[int]:
    try:
        return [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def _kill_node(agent: subprocess.Popen) -> None:
    """SIGKILL a node as a dying machine goes: its agent and every process under it (torchrun
    starts each worker in a session of its own, so the agent's process group is not enough)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    tree, grew = {agent.pid}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | children, bool(children)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _tail(logs: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2500:]}" for p in sorted(logs.glob("*.txt")))


def test_two_nodes_are_bitwise_replicas_and_match_one_process(fmnist_root, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    codes = _wait(
        _nodes(_free_port(), str(single_node.HERE), str(out), str(fmnist_root), logs=tmp_path),
        tmp_path,
    )
    assert codes == [0, 0], _tail(tmp_path)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name in single_node.CASES:
        first, second = single_node._tensors(ranks[0][name]), single_node._tensors(ranks[1][name])
        assert [k for k in first if not torch.equal(first[k], second[k])] == [], name
    for name in ("simclr", "mocov2"):  # the same views as one process with the same global batch
        one = single_node._tensors(
            single_node._train_eval_bn(fmnist_root, tmp_path / "single", name)
        )
        single_node.assert_matches_one_process(one, single_node._tensors(ranks[0][name]), name)


def _pretrain_args(root: Path, run: Path, *extra: str) -> list[str]:
    sets = [arg for item in tiny_overrides(root, **RUN) for arg in ("--set", item)]
    return ["-m", "synccp", "pretrain", *sets, "--out", str(run), "--no-eval", *extra]


def test_killing_a_node_mid_run_then_resuming_both_matches_an_uninterrupted_run(
    fmnist_root, tmp_path
):
    run, logs = tmp_path / "two_nodes", tmp_path / "logs"
    logs.mkdir()
    nodes = _nodes(_free_port(), *_pretrain_args(fmnist_root, run), logs=logs)
    deadline = time.monotonic() + 180
    while not (run / "checkpoints" / "last.pt").is_file():  # the first epoch's checkpoint
        assert time.monotonic() < deadline and all(p.poll() is None for p in nodes), _tail(logs)
        time.sleep(0.02)
    _kill_node(nodes[1])  # node 1, agent and worker, dies mid-run
    assert nodes[1].wait(timeout=30) == -signal.SIGKILL
    assert _wait(nodes[:1], logs, timeout=120)[0] != 0, _tail(logs)  # node 0 fails, does not hang
    assert not (run / "summary.json").exists()  # killed before the end
    codes = _wait(
        _nodes(_free_port(), *_pretrain_args(fmnist_root, run, "--resume"), logs=logs), logs
    )
    assert codes == [0, 0], _tail(logs)
    reference = tmp_path / "one_node"
    done = _wait(
        [_torchrun(None, 0, *_pretrain_args(fmnist_root, reference), log=logs / "one_node.txt")],
        logs,
    )
    assert done == [0], _tail(logs)
    for name in ("model.safetensors", "masks.safetensors"):
        resumed, whole = (load_file(str(d / name)) for d in (run, reference))
        assert resumed.keys() == whole.keys()
        assert [k for k in whole if not torch.equal(whole[k], resumed[k])] == [], name
