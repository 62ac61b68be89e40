"""Timeouts: every service has a traffic timeout and a dead stage answers 503 well before it (never a hang)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml

from aifx.api.errors import StageUnavailable
from aifx.api.stage_client import StageClient
from aifx.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HANG_LIMIT = 10.0  # what a client would call a hang


def traffic_timeouts() -> dict[str, float]:
    """services.<name>.traffic.timeout from configuration.yaml."""
    config = yaml.safe_load((ROOT / "configuration.yaml").read_text())
    return {name: float(svc["traffic"]["timeout"]) for name, svc in config["services"].items()}


def test_every_service_has_a_traffic_timeout():
    timeouts = traffic_timeouts()
    assert set(timeouts) == {"ReversalEngine", "ReversalDetector", "DirectionClassifier"}
    assert all(0 < t <= 60 for t in timeouts.values())


def test_a_dead_stage_answers_before_the_traffic_timeout_and_the_hang_limit():
    """Our 503 with a message comes before BentoML's generic timeout and before a client gives up."""
    s = Settings()
    budget = (s.stage_attempts, s.stage_timeout_seconds, s.stage_backoff_seconds)
    caller = StageClient("stage1", "ReversalDetector", None, *budget)  # type: ignore[arg-type]
    assert caller.deadline < HANG_LIMIT < traffic_timeouts()["ReversalEngine"]


def test_a_call_queued_behind_hanging_calls_still_ends_at_the_deadline():
    """Queue wait counts: a caller behind two hanging in-flight calls gets a 503 at the deadline, not later."""

    async def hang(windows):
        await asyncio.sleep(60)

    async def run() -> tuple[float, str]:
        caller = StageClient("stage2", "DirectionClassifier", hang, attempts=2, timeout=0.2, backoff=0.0)
        blockers = [asyncio.ensure_future(caller([i])) for i in range(2)]
        await asyncio.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(StageUnavailable) as err:
            await caller([9])
        elapsed = time.monotonic() - start
        for b in blockers:
            b.cancel()
        await asyncio.gather(*blockers, return_exceptions=True)
        assert elapsed <= caller.deadline + 0.2
        return elapsed, str(err.value)

    _, message = asyncio.run(run())
    assert "no answer within" in message and "retry later" in message
