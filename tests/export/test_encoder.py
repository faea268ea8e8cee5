"""model.safetensors describes itself: load_encoder builds the network from the file alone."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import synccp
from export_helpers import export_sparse
from synccp.export.metadata import MASK_LAYOUTS
from torchvision_layout import torchvision_resnet18


@pytest.mark.parametrize("granularity", ["unstructured", "nm", "channel"])
def test_load_encoder_rebuilds_the_network_from_the_file_alone(tmp_path, one_thread, granularity):
    model = export_sparse(tmp_path, granularity=granularity, width=8, in_channels=2)
    path = tmp_path / "model.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    encoder, sparsity = json.loads(meta["synccp.encoder"]), json.loads(meta["synccp.sparsity"])
    assert (encoder["architecture"], encoder["stem"], encoder["width"], encoder["in_channels"]) == \
        ("resnet18", "cifar", 8, 2)
    assert (
        encoder["mean"] == [0.5, 0.5]
        and encoder["std"] == [0.25, 0.25]
        and encoder["out_dim"] == 64
    )
    assert sparsity["granularity"] == granularity and sparsity["algorithm"] == "static"
    assert (
        abs(sparsity["density"] - (0.5 if granularity == "nm" else 0.3)) < 0.02
        and sparsity["mask_layout"] == MASK_LAYOUTS[granularity]
    )
    loaded = synccp.load_encoder(path)
    assert not loaded.training
    masks = load_file(str(tmp_path / "masks.safetensors"))
    state = loaded.state_dict()
    for key, mask in masks.items():
        assert not state[key.split("/", 1)[1]][~mask].any()  # pruned entries exactly zero
    x = torch.randn(3, 2, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert synccp.encoder_metadata(path)[0] == encoder


def test_bare_tensor_file_is_refused_with_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    save_file(
        {"conv1.weight": torch.zeros(4, 1, 3, 3)},
        str(tmp_path / "m.safetensors"),
        metadata={"format": "pt"},
    )
    with pytest.raises(ValueError, match="synccp.encoder"):
        synccp.load_encoder(tmp_path / "m.safetensors")


def test_imagenet_stem_export_loads_strictly_into_torchvision_resnet18(tmp_path, one_thread):
    """The README's recipe: torchvision's resnet18 with fc = Identity loads the export strictly."""
    model = export_sparse(tmp_path, stem="imagenet", width=64, in_channels=3, density=0.5)
    tv = torchvision_resnet18()
    missing, unexpected = tv.load_state_dict(
        load_file(str(tmp_path / "model.safetensors")), strict=False
    )
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    tv.fc = nn.Identity()
    tv.load_state_dict(load_file(str(tmp_path / "model.safetensors")))  # strict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(x), model(x))


def test_the_export_is_byte_identical_across_processes(tmp_path):
    """safetensors orders metadata by a per-process hash; a resumed run exports the same bytes."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; "
        "from export_helpers import export_sparse; export_sparse(Path(sys.argv[1]))"
    )
    root = Path(__file__).resolve().parents[2]
    for name in ("a", "b", "c"):
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / name)],
            check=True,
            cwd=root,
            env={"PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"},
            timeout=120,
        )
    blobs = {(tmp_path / n / "model.safetensors").read_bytes() for n in "abc"}
    assert len(blobs) == 1
    assert synccp.load_encoder(tmp_path / "a" / "model.safetensors") is not None
