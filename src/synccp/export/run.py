"""`synccp export DIR --format onnx|compact|compact-onnx`: deployable files of a run's encoder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from synccp.export.compact import compact_encoder, parameter_count
from synccp.export.encoder import KEPT_FEATURES, load_encoder
from synccp.export.metadata import (
    ENCODER_KEY,
    SPARSITY_KEY,
    canonicalize,
    file_metadata,
    read_metadata,
)
from synccp.rundir import MODEL, atomic_write

FORMATS = ("onnx", "compact", "compact-onnx")
CHECK_BATCH = 8  # random normalized images the exported file is checked on


def _default_name(fmt: str) -> str:
    return {
        "onnx": "encoder.onnx",
        "compact": "encoder_compact.safetensors",
        "compact-onnx": "encoder_compact.onnx",
    }[fmt]


def export_run(run_dir: str | Path, fmt: str, *, out: str | Path | None = None) -> dict:
    """Export the run's encoder (`model.safetensors`) as `fmt`; return what was written and how
    far its outputs are from the dense-shaped torch encoder (`max_abs_diff`)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    source = Path(run_dir) / MODEL
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: the run has not finished (try --resume)")
    encoder, sparsity = read_metadata(source)
    dense = load_encoder(source)
    out = Path(out) if out is not None else Path(run_dir) / "export" / _default_name(fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = encoder["image_size"]
    images = torch.randn(
        CHECK_BATCH, encoder["in_channels"], size, size, generator=torch.Generator().manual_seed(0)
    )  # (B, C, S, S)
    model = compact_encoder(dense) if fmt.startswith("compact") else dense
    report = {
        "format": fmt,
        "path": str(out),
        "parameters_dense": parameter_count(dense),
        "parameters": parameter_count(model),
    }
    if fmt == "compact":
        state = {**model.trunk.state_dict(), KEPT_FEATURES: model.kept_features}
        state = {k: v.contiguous() for k, v in state.items()}
        meta = file_metadata({**encoder, "compact": True}, sparsity)
        atomic_write(
            out, lambda tmp: (save_file(state, str(tmp), metadata=meta), canonicalize(tmp))
        )
        with torch.no_grad():
            report["max_abs_diff"] = float((load_encoder(out)(images) - dense(images)).abs().max())
    else:
        from synccp.export.onnx_export import export_onnx, onnxruntime_max_abs_diff, zero_count

        atomic_write(out, lambda tmp: export_onnx(model, tmp, example=images[:1]))
        report["max_abs_diff"] = onnxruntime_max_abs_diff(dense, out, images)
        report["conv_zeros"], report["conv_entries"] = zero_count(out)
        _sidecar(out, encoder, sparsity)
    report["bytes"] = out.stat().st_size
    return report


def _sidecar(path: Path, encoder: dict, sparsity: dict) -> None:
    """`<file>.json` next to an ONNX file: the encoder / sparsity metadata of the safetensors."""
    text = json.dumps({ENCODER_KEY: encoder, SPARSITY_KEY: sparsity}, indent=2) + "\n"
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))


def format_export(report: dict) -> str:
    lines = [
        f"wrote {report['path']} ({report['bytes'] / 1e6:.2f} MB, {report['format']})",
        f"parameters: {report['parameters']:,} (dense-shaped export: "
        f"{report['parameters_dense']:,})",
        f"max |difference| to the torch encoder on {CHECK_BATCH} random inputs: "
        f"{report['max_abs_diff']:.3g}",
    ]
    if "conv_zeros" in report:
        lines.append(
            f"exact zeros in conv weights: {report['conv_zeros']:,} of {report['conv_entries']:,}"
        )
    return "\n".join(lines)
