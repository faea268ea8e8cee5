"""synccp export: ONNX checked with onnxruntime, channel compaction with the same outputs."""

import pytest
import torch
from safetensors.torch import load_file

import synccp
from export_helpers import export_sparse, sparse_backbone
from synccp.cli import main
from synccp.export.compact import compact_encoder, parameter_count
from synccp.export.run import export_run


def test_onnx_export_runs_in_onnxruntime_with_pruned_weights_exactly_zero(
    tmp_path, one_thread, capsys
):
    model = export_sparse(tmp_path, granularity="unstructured", density=0.2, width=8)
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    assert "max |difference|" in out
    report = export_run(tmp_path, "onnx")
    assert report["max_abs_diff"] < 1e-4  # onnxruntime vs the torch encoder, reported by the CLI
    pruned = sum(
        int((~m).sum())
        for k, m in load_file(str(tmp_path / "masks.safetensors")).items()
        if k.startswith("online/")
    )
    assert report["conv_zeros"] >= pruned > 0  # BN folding keeps zeros zero
    assert (tmp_path / "export" / "encoder.json").is_file()
    import onnxruntime as ort

    session = ort.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    x = torch.randn(5, 1, 16, 16)  # another batch size: the batch axis is dynamic
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(got) - model(x)).abs().max() < 1e-4


def _kill_stream_channels(model, stage, channels):
    """Prune `channels` of a stage's residual stream in every conv writing it (BN constant < 0)."""
    layer = getattr(model, f"layer{stage}")
    with torch.no_grad():
        for block in layer:
            block.conv2.weight[channels] = 0
            block.bn2.bias[channels] = -1.0
            if block.downsample is not None:
                block.downsample[0].weight[channels] = 0
                block.downsample[1].bias[channels] = -1.0


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_compact_encoder_is_smaller_with_the_same_outputs(backbone, one_thread):
    model, _ = sparse_backbone(backbone=backbone, granularity="channel", density=0.3, width=8)
    if backbone == "resnet18":
        _kill_stream_channels(model, 4, [0, 5, 9])
        _kill_stream_channels(model, 3, [1, 2])
        with torch.no_grad():
            model.layer3[1].conv2.weight[1, 0, 0, 0] = 0.5  # one writer left: channel 1 stays
    compact = compact_encoder(model)
    assert parameter_count(compact) < 0.8 * parameter_count(model)
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), model(x), rtol=1e-5, atol=1e-5)
    if backbone == "resnet18":
        kept = compact.kept_features.tolist()
        assert len(kept) <= model.out_dim - 3 and not {0, 5, 9} & set(kept)
        assert compact.trunk.layer3[0].bn2.num_features <= 31  # channel 2 gone, channel 1 kept
        assert (
            compact.trunk.layer4[0].conv1.in_channels == compact.trunk.layer3[1].conv2.out_channels
        )


def test_compact_keeps_pruned_filters_whose_batchnorm_makes_them_constant(one_thread):
    """A zero filter with a positive BN constant is a nonzero map: removing it changes outputs."""
    model, _ = sparse_backbone(granularity="unstructured", density=1.0, width=8)
    with torch.no_grad():
        model.layer2[0].conv1.weight[:4] = 0
        model.layer2[0].bn1.running_mean.zero_()
        model.layer2[0].bn1.bias[:2] = -0.3  # relu(-0.3) = 0: removable
        model.layer2[0].bn1.bias[2:4] = 0.3  # relu(0.3) > 0: must stay
    compact = compact_encoder(model)
    assert compact.trunk.layer2[0].conv1.out_channels == 16 - 2
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), model(x), rtol=1e-5, atol=1e-5)


def test_compact_export_round_trips_through_load_encoder(tmp_path, one_thread):
    model = export_sparse(tmp_path, granularity="channel", density=0.3, width=8)
    report = export_run(tmp_path, "compact")
    assert report["parameters"] < report["parameters_dense"] and report["max_abs_diff"] < 1e-5
    loaded = synccp.load_encoder(report["path"])
    assert synccp.encoder_metadata(report["path"])[0]["compact"] is True
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)
    onnx = export_run(tmp_path, "compact-onnx")
    assert onnx["max_abs_diff"] < 1e-4 and onnx["parameters"] == report["parameters"]


def test_export_of_an_unfinished_run_names_the_file(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 2
    assert "model.safetensors does not exist" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_trained_channel_run_exports_compact_from_the_cli(
    fmnist_root, tmp_path, one_thread, capsys
):
    from helpers import tiny_overrides
    from synccp.config import load_config
    from synccp.train.loop import pretrain

    cfg = load_config(
        None,
        tiny_overrides(
            fmnist_root, **{"sparsity.granularity": '"channel"', "sparsity.density": 0.3}
        ),
    )
    pretrain(cfg, tmp_path / "run")
    spec, sparsity = synccp.encoder_metadata(tmp_path / "run" / "model.safetensors")
    assert (spec["width"], spec["in_channels"], spec["image_size"], spec["stem"]) == (
        4,
        1,
        16,
        "cifar",
    )
    assert sparsity["granularity"] == "channel" and abs(sparsity["density"] - 0.3) < 0.05
    assert main(["export", str(tmp_path / "run"), "--format", "compact"]) == 0
    assert "parameters:" in capsys.readouterr().out
    dense = synccp.load_encoder(tmp_path / "run" / "model.safetensors")
    compact = synccp.load_encoder(tmp_path / "run" / "export" / "encoder_compact.safetensors")
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), dense(x), rtol=1e-5, atol=1e-5)
