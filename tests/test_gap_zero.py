"""SyncCP at density gap Δ = 0 trains the same network as GMP, bit for bit (DESIGN.md §1: "Δ = 0
is symmetric sparse–sparse"). Both prune on one cubic ramp at the same steps from the same
scores, and at Δ = 0 the second branch's mask equals the online one, so nothing else differs.
This is why the study runs the Δ ablation's Δ = 0 point once, as the GMP cell of the same
recipe and seed (configs/grids/cpu_protocol.toml, `synccp.results.claims`)."""

import pytest
from safetensors.torch import load_file

from helpers import method_keys, tiny_overrides
from synccp.config import load_config
from synccp.rundir import read_metrics
from synccp.train.loop import pretrain

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _train(root, out, method, algorithm):
    sets = tiny_overrides(root, **method_keys(method), **{
        "sparsity.algorithm": f'"{algorithm}"', "sparsity.density": 0.3,
        "sparsity.density_gap": 0.0})
    pretrain(load_config(None, sets), out)
    tensors = {name: load_file(str(out / name)) for name in ("model.safetensors",
                                                             "masks.safetensors")}
    losses = [r["loss"] for r in read_metrics(out, "train")]
    return tensors, losses


@pytest.mark.parametrize("method", ["simclr", "byol"])  # a shared encoder, a momentum target
def test_synccp_at_gap_zero_is_gmp_bit_for_bit(fmnist_root, tmp_path, method):
    gmp, gmp_losses = _train(fmnist_root, tmp_path / "gmp", method, "gmp")
    sync, sync_losses = _train(fmnist_root, tmp_path / "synccp", method, "synccp")
    assert gmp_losses and sync_losses == gmp_losses
    for name, tensors in gmp.items():
        assert tensors.keys() == sync[name].keys(), name
        assert all(tensors[k].equal(sync[name][k]) for k in tensors), name
    masks = sync["masks.safetensors"]
    online = {k.split("/", 1)[1]: v for k, v in masks.items() if k.startswith("online/")}
    assert online and all(masks[f"second/{k}"].equal(v) for k, v in online.items())
    kept = sum(int(m.sum()) for m in online.values()) / sum(m.numel() for m in online.values())
    assert abs(kept - 0.3) < 0.01  # the run did prune: the equality is not that of two dense runs
