"""Deployment helpers and manifests of the AIFX Reversal Engine (see docs/deployment.md)."""
