"""Issue 29, in-process: what an attacker or a failing database can no longer do (no 500 anywhere here).

Database failures on every route are 503; admin routes refuse a caller before they read its body;
batch idempotency keys fit every item; /health keeps failure reasons for the admin; a batch under
an experiment is one transaction.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from aifx.http import app as app_module
from aifx.settings import Settings

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
TOKEN = "round-two-admin-token-0123456789abcdefgh"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def parts() -> Any:
    from aifx.http.bootstrap import app

    return app.state.parts


def down(*_args: Any, **_kwargs: Any) -> Any:
    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused by db-secret.internal"))


@pytest.fixture
def guarded(client) -> Iterator:
    from starlette.testclient import TestClient

    app = app_module.create_app(Settings(admin_token=TOKEN, versions=("v3.1", "v3.0", "v2.9")))
    app.state.parts = parts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(app, base_url="http://localhost", client=("192.0.2.40", 1)) as c:
            yield c


def test_candles_answer_503_when_the_database_fails(client, candle_json, monkeypatch):
    monkeypatch.setattr(parts().outcomes.store, "add_candles", down)
    r = client.post("/reversal/candles", json={**PAIR, "data": candle_json(3000, 3)})
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1" and "error id" in r.json()["error"]
    assert "db-secret" not in r.text


def test_an_unmapped_database_failure_is_503_on_any_route(client, monkeypatch):
    monkeypatch.setattr(parts().ab.store, "list_experiments", down)
    r = client.get("/reversal/experiments")
    assert r.status_code == 503 and "db-secret" not in r.text, r.text


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/reversal/experiments"),
        ("PUT", "/reversal/promotion/v3.0"),
        ("PUT", "/reversal/predictions/00000000-0000-0000-0000-000000000000/outcome"),
        ("POST", "/reversal/predictions/00000000-0000-0000-0000-000000000000/outcome"),
        ("POST", "/reversal/candles"),
    ],
)
@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'{"pips": "x"}'])
def test_admin_and_outcome_routes_check_the_token_before_the_body(guarded, method, path, raw):
    """401 before 400 or 422: a caller without the token learns nothing about what the route accepts."""
    r = guarded.request(method, path, content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    r = guarded.request(method, path, content=raw, headers={"Content-Type": "application/json", **ADMIN})
    assert r.status_code in (400, 404, 409, 422), r.text


@pytest.mark.parametrize("length", [100, 126, 127, 128])
def test_a_long_batch_idempotency_key_works_for_every_item(client, candle_json, experiment, length):
    key = ("k" * length)[:length]
    key = uuid.uuid4().hex + key[32:]
    items = [{**PAIR, "data": candle_json(3000 + i, 80), "user_id": f"long-{length}-{i}"} for i in range(12)]
    ids = []
    for _ in range(2):
        r = client.post("/reversal/predict/batch", json={"items": items}, headers={"Idempotency-Key": key})
        results = r.json()["data"]["results"]
        assert all(x["success"] for x in results), results
        ids.append([x["data"]["prediction_id"] for x in results])
    assert ids[0] == ids[1] and len(set(ids[0])) == 12  # a retry finds every item; no two items share an id


def test_a_batch_under_an_experiment_is_one_transaction(client, candle_json, experiment, monkeypatch):
    store = parts().ab.store
    opened: list[int] = []
    real = store.write

    def counting():
        opened.append(1)
        return real()

    monkeypatch.setattr(store, "write", counting)
    items = [{**PAIR, "data": candle_json(3000 + i, 80), "user_id": f"tx-{i}"} for i in range(50)]
    r = client.post("/reversal/predict/batch", json={"items": items})
    assert r.status_code == 200 and all(x["success"] for x in r.json()["data"]["results"])
    assert len(opened) == 1


def test_health_keeps_the_reasons_for_the_admin(guarded, client, monkeypatch):
    registry = parts().registry
    real = registry.availability

    async def failing(*args: Any, **kwargs: Any) -> Any:
        avail = await real(*args, **kwargs)
        avail.failed = {**avail.failed, "v9.9": "stage 1 model not loaded: /secret/path/model.tflite"}
        return avail

    monkeypatch.setattr(registry, "availability", failing)
    anonymous = guarded.get("/health").json()
    assert "/secret/path" not in str(anonymous) and anonymous["failed_versions"]["v9.9"].startswith("not loaded")
    assert "/secret/path" in guarded.get("/health", headers=ADMIN).json()["failed_versions"]["v9.9"]
    assert "/secret/path" in client.get("/health").json()["failed_versions"]["v9.9"]  # local, no tokens
