"""synccp: sparse training from scratch of self-supervised vision encoders (SyncCP and baselines).

The public API (README, "Use it from your own training code"; examples/):

- `Sparsifier(model, algorithm=..., density=..., total_steps=..., optimizer=...)`: masks for any
  `nn.Module`; one `sparsifier.step()` after every `optimizer.step()`. Its two-branch forms:
  `target=` an EMA target module (BYOL, MoCo: `step(tau)` does the EMA update and the target
  re-mask), or one shared module with `encoder("online")` / `encoder("second")` (SimCLR, Barlow).
- `SparsitySpec`: the validated settings a Sparsifier takes; `ALGORITHMS` / `POLICIES`: the rows.
- `export_model(run_dir, module, sparsifier)`: `model.safetensors` + `masks.safetensors`.
- `load_encoder(path)`, `encoder_metadata(path)`: an exported encoder file.

The names import torch on first use only, so `synccp --help` stays fast.
"""

__version__ = "0.1.0"
__all__ = ["ALGORITHMS", "POLICIES", "Sparsifier", "SparsitySpec", "encoder_metadata",
           "export_model", "load_encoder", "prunable_weights"]
_LAZY = {"Sparsifier": "synccp.sparsity.sparsifier", "SparsitySpec": "synccp.sparsity.spec",
         "ALGORITHMS": "synccp.sparsity.registry", "POLICIES": "synccp.sparsity.registry",
         "prunable_weights": "synccp.sparsity.selection", "export_model": "synccp.rundir.artifacts"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'synccp' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def load_encoder(path, *, device="cpu"):
    """A ready `nn.Module` (eval mode, pruned entries zero) from an exported encoder file alone."""
    from synccp.export.encoder import load_encoder as load

    return load(path, device=device)


def encoder_metadata(path) -> tuple[dict, dict]:
    """(encoder, sparsity) metadata of an exported file: architecture, normalisation, densities."""
    from synccp.export.metadata import read_metadata

    return read_metadata(path)
