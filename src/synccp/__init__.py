"""synccp: sparse training from scratch of self-supervised vision encoders (SyncCP and baselines)."""

__version__ = "0.1.0"


def load_encoder(path, *, device="cpu"):
    """A ready `nn.Module` (eval mode, pruned entries zero) from an exported encoder file alone."""
    from synccp.export.encoder import load_encoder as load

    return load(path, device=device)


def encoder_metadata(path) -> tuple[dict, dict]:
    """The (encoder, sparsity) metadata of an exported file: architecture, normalisation, densities."""
    from synccp.export.metadata import read_metadata

    return read_metadata(path)
