"""Timeouts: the service has a traffic timeout a client would not call a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HANG_LIMIT = 10.0  # what a client would call a hang


def traffic_timeouts() -> dict[str, float]:
    """services.<name>.traffic.timeout from configuration.yaml."""
    config = yaml.safe_load((ROOT / "configuration.yaml").read_text())
    return {name: float(svc["traffic"]["timeout"]) for name, svc in config["services"].items()}


def test_every_service_has_a_traffic_timeout():
    timeouts = traffic_timeouts()
    assert set(timeouts) == {"ReversalEngine"}  # one service: the stage runners live in its workers
    assert all(0 < t <= 60 for t in timeouts.values())
