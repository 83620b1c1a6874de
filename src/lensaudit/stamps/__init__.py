"""Cutout store (Zarr v3, sharded), quality metrics, normalisation."""
