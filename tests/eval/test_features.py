"""Fast feature extraction equals the plain eval-mode forward; eval.subset is a recorded mode."""

import json

import pytest
import torch
from torch import nn

from export_helpers import sparse_backbone
from helpers import tiny_overrides
from synccp.cli import main
from synccp.config import load_config
from synccp.data.views import eval_transform
from synccp.eval.features import extract_features, inference_copy
from synccp.eval.linear import linear_probe
from synccp.train.loop import pretrain


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_folded_channels_last_features_equal_the_plain_forward(backbone, one_thread):
    model, _ = sparse_backbone(backbone=backbone, width=8, density=0.3)
    images = torch.randint(0, 256, (10, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        want = model.eval()(eval_transform(images, image_size=16, mean=(0.5,), std=(0.25,)))
    got = extract_features(model, images, image_size=16, mean=(0.5,), std=(0.25,), batch_size=4)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not got.is_inference()  # the linear probe trains on it
    linear_probe(got, torch.arange(10) % 2, got, torch.arange(10) % 2, num_classes=2, epochs=1)
    folded = inference_copy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert model.layer1[0].bn1.weight.requires_grad  # the original is untouched


def test_eval_subset_is_a_quick_protocol_recorded_in_eval_json(
    fmnist_root, tmp_path, one_thread, capsys
):
    cfg = load_config(None, tiny_overrides(fmnist_root, **{"eval.raw_baseline": "false"}))
    pretrain(cfg, tmp_path / "run")
    assert main(["eval", str(tmp_path / "run"), "--probe", "knn", "--subset", "20"]) == 0
    assert "quick (eval.subset=20)" in capsys.readouterr().out
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert (result["train_images"], result["test_images"], result["protocol"]) == (
        20,
        20,
        "quick (eval.subset=20)",
    )
    assert main(["eval", str(tmp_path / "run"), "--probe", "knn"]) == 0  # the default: full
    result = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert (result["train_images"], result["test_images"], result["protocol"]) == (96, 48, "full")
