"""ONNX export of an encoder for edge runtimes, checked against the torch module with onnxruntime.

Uses torch's TorchScript-based exporter (``dynamo=False``): it needs only the `onnx` package, works
on every torch >= 2.4 we support, and folds each eval-mode BatchNorm into the conv before it. The
fold multiplies a filter by γ/√(σ²+ε), so pruned weights stay exactly zero in the ONNX file.
Install the extra: ``pip install 'synccp[onnx]'``.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import torch
from torch import nn

INPUT, OUTPUT = "images", "features"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise RuntimeError(
            f"the ONNX export needs the {module!r} package: pip install 'synccp[onnx]'"
        ) from err


def export_onnx(
    model: nn.Module, path: str | Path, *, example: torch.Tensor, opset: int = 17
) -> Path:
    """Write `model` (eval mode) to `path` with a dynamic batch axis; (B, C, S, S) → (B, D)."""
    _require("onnx")
    path = Path(path)
    kwargs = dict(
        input_names=[INPUT],
        output_names=[OUTPUT],
        opset_version=opset,
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        do_constant_folding=True,
    )
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model.eval(), (example,), str(path), **kwargs)
    return path


def onnxruntime_max_abs_diff(model: nn.Module, path: str | Path, images: torch.Tensor) -> float:
    """Largest |onnxruntime(path) − model| over the (B, C, S, S) float `images`, on CPU."""
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT], {INPUT: images.numpy()})
    with torch.no_grad():
        want = model.eval()(images)
    return float((torch.from_numpy(got) - want).abs().max())


def zero_count(path: str | Path) -> tuple[int, int]:
    """(exact zeros, entries) over the conv weights (4-D initializers) of an ONNX file."""
    onnx = _require("onnx")
    from onnx import numpy_helper

    zeros = total = 0
    for tensor in onnx.load(str(path)).graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.ndim == 4:
            zeros += int((array == 0).sum())
            total += array.size
    return zeros, total
