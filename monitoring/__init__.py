"""Prometheus, alerting and Grafana configuration of the AIFX Reversal Engine, and their checks."""
