"""Latent reasoning: continuous thought (Coconut) distilled from (x, t, y) traces (docs/latent-reasoning.md)."""
