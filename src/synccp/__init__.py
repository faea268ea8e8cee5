"""synccp: sparse training from scratch of self-supervised vision encoders (SyncCP and baselines)."""

__version__ = "0.1.0"
