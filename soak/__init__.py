"""Soak test of the service: `python -m soak.run` (make soak)."""
