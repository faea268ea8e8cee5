"""Exports that leave synccp: self-describing safetensors, `load_encoder`, ONNX, channel-compact."""

from synccp.export.encoder import load_encoder
from synccp.export.metadata import read_metadata

__all__ = ["load_encoder", "read_metadata"]
