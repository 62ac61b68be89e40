"""Fault test against a real `bentoml serve`: the state database becomes unavailable (issue 6, acceptance 4)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.integration.fault_tools import (
    TOKEN,
    Call,
    Load,
    assert_clean_failures,
    fault_db,  # noqa: F401 - a fixture
    predict_bodies,
    wait_healthy,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.conftest_pg"]

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


# ---- acceptance 4: the state database becomes unavailable ---------------------------------------


def start_experiment(url: str) -> str:
    eid = f"fault-{uuid.uuid4().hex[:8]}"
    body = {"experiment_id": eid, "name": "db outage", "variant_a": "v3.0", "variant_b": "v3.1"}
    assert httpx.post(f"{url}/reversal/experiments", json=body, headers=ADMIN, timeout=30).status_code == 201
    assert httpx.post(f"{url}/reversal/experiments/{eid}/activate", headers=ADMIN, timeout=30).status_code == 200
    return eid


def mixed(bodies: list[bytes]) -> Callable[[int], tuple[str, bytes]]:
    """Even calls without a user, odd calls with one of 500 users (so under the experiment)."""

    def request(i: int) -> tuple[str, bytes]:
        body = bodies[i % len(bodies)]
        if i % 2 == 0:
            return "plain", body
        return "user", body[:-1] + f', "user_id": "user-{i % 500}"}}'.encode()

    return request


def stored_prediction_ids(db_url: str, experiment_id: str) -> set[str]:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT prediction_id FROM predictions WHERE experiment_id = :e"), {"e": experiment_id}
            )
            return {str(r[0]) for r in rows}
    finally:
        engine.dispose()


def test_state_database_outage(launch, tmp_path, candle_json, fault_db):  # noqa: F811
    db_url, available = fault_db
    server = launch(tmp_path, AIFX_ADMIN_TOKEN=TOKEN, AIFX_DATABASE_URL=db_url)
    try:
        wait_healthy(server.url)
        eid = start_experiment(server.url)
        with Load(server.url, mixed(predict_bodies(candle_json))) as load:
            load.wait_until(lambda calls: sum(c.status == 200 for c in calls) >= 40, timeout=30)
            down_at = time.monotonic()
            available(False)
            load.wait_until(lambda calls: sum(c.status == 503 for c in calls) >= 10, timeout=15)
            time.sleep(3.0)
            up_at = time.monotonic()
            available(True)
            load.wait_until(lambda calls: sum(c.start > up_at + 2 for c in calls) >= 40, timeout=30)
        check_outage(load.calls, down_at, up_at)
        acked = {c.body["data"]["prediction_id"] for c in load.calls if c.kind == "user" and c.status == 200}
        assert stored_prediction_ids(db_url, eid) == acked  # nothing acknowledged lost, no failure counted
        metrics = httpx.get(f"{server.url}/reversal/experiments/{eid}/metrics", timeout=30).json()["data"]
        assert sum(v["metrics"]["count"] for v in metrics["variants"].values()) == len(acked)
    finally:
        server.stop()


def check_outage(calls: list[Call], down_at: float, up_at: float) -> None:
    """Plain predictions never fail; experiment predictions fail with a 503 only around the outage."""
    assert_clean_failures(calls)
    plain = [c for c in calls if c.kind == "plain"]
    during = [c for c in plain if down_at < c.start < up_at]
    assert during and all(c.status == 200 for c in plain), "predictions without an experiment must be served"
    failed = [c for c in calls if c.status != 200]
    assert failed and all(c.kind == "user" for c in failed)
    assert all("experiment database is unavailable" in c.body["error"] for c in failed if c.body)
    assert all(c.end > down_at and c.start < up_at + 2 for c in failed)
    user_ok = [c for c in calls if c.kind == "user" and c.status == 200]
    assert any(c.end < down_at for c in user_ok) and any(c.start > up_at + 2 for c in user_ok)
    assert all(c.body["data"].get("prediction_id") for c in user_ok)
