"""Evaluation of frozen encoders: feature extraction, weighted kNN and a linear probe."""
