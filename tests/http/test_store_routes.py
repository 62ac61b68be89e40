"""Issue 11 over HTTP: Idempotency-Key, bounded pips, admin corrections and erasure, the rate limit."""

from __future__ import annotations

import uuid
import warnings

import pytest

from aifx.http import app as app_module
from aifx.settings import Settings

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
TOKEN = "store-routes-admin-token-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def guarded_client(client, **settings: object):
    """A TestClient over an app with other settings, sharing the session's parts."""
    from starlette.testclient import TestClient

    from aifx.http.bootstrap import app

    guarded = app_module.create_app(Settings(versions=("v3.1", "v3.0", "v2.9"), **settings))  # type: ignore[arg-type]
    guarded.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TestClient(guarded)


def _predict(client, candle_json, user: str, key: str | None = None, stop: int = 3000):
    headers = {"Idempotency-Key": key} if key else {}
    body = {**PAIR, "data": candle_json(stop, 80), "user_id": user}
    return client.post("/reversal/predict", json=body, headers=headers)


def _count(client, eid: str) -> int:
    variants = client.get(f"/reversal/experiments/{eid}/metrics").json()["data"]["variants"]
    return sum(variants[v]["metrics"]["count"] for v in ("A", "B"))


def test_a_retried_prediction_is_counted_once(client, candle_json, experiment):
    key = str(uuid.uuid4())
    first = _predict(client, candle_json, "retry-1", key).json()["data"]
    again = _predict(client, candle_json, "retry-1", key).json()["data"]
    assert again["prediction_id"] == first["prediction_id"]
    assert _count(client, experiment["experiment_id"]) == 1
    r = _predict(client, candle_json, "someone-else", key)
    assert r.status_code == 409 and "Idempotency-Key" in r.json()["error"]
    r = _predict(client, candle_json, "retry-1", "no spaces allowed")
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["error"]


def test_a_retried_batch_is_counted_once(client, candle_json, experiment):
    key = str(uuid.uuid4())
    items = [{**PAIR, "data": candle_json(3000 + i, 80), "user_id": f"b-{i}"} for i in range(3)]
    ids = []
    for _ in range(2):
        r = client.post("/reversal/predict/batch", json={"items": items}, headers={"Idempotency-Key": key})
        ids.append([x["data"]["prediction_id"] for x in r.json()["data"]["results"]])
    assert ids[0] == ids[1] and len(set(ids[0])) == 3
    assert _count(client, experiment["experiment_id"]) == 3


@pytest.mark.parametrize("pips", [1e200, -1e200, 10_000.5])
def test_outcomes_beyond_the_bound_are_422(client, candle_json, experiment, pips):
    pid = _predict(client, candle_json, "big").json()["data"]["prediction_id"]
    r = client.post(f"/reversal/predictions/{pid}/outcome", json={"pips": pips})
    assert r.status_code == 422 and "between -10000 and 10000" in r.json()["error"]
    assert client.get(f"/reversal/experiments/{experiment['experiment_id']}/metrics").status_code == 200


def test_only_an_admin_corrects_an_outcome_or_erases_a_user(client, candle_json, experiment):
    pid = _predict(client, candle_json, "erase-me").json()["data"]["prediction_id"]
    assert client.post(f"/reversal/predictions/{pid}/outcome", json={"pips": 40.0}).status_code == 201
    with guarded_client(client, admin_token=TOKEN) as guarded:
        assert guarded.put(f"/reversal/predictions/{pid}/outcome", json={"pips": -4.0}).status_code == 401
        r = guarded.put(f"/reversal/predictions/{pid}/outcome", json={"pips": -4.0}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["data"]["pips"] == -4.0 and r.json()["data"]["corrected_at"]
        assert guarded.delete("/reversal/users/erase-me/predictions").status_code == 401
        r = guarded.delete("/reversal/users/erase-me/predictions", headers=ADMIN)
        assert r.status_code == 200 and r.json()["data"] == {"user_id": "erase-me", "deleted": 1}
    r = client.post(f"/reversal/predictions/{pid}/outcome", json={"pips": 1.0})
    assert r.status_code == 404  # erased with its outcome


def test_a_client_over_its_rate_gets_429_and_others_do_not(client):
    with guarded_client(client, rate_limit_per_second=1.0, rate_limit_burst=3) as limited:
        codes = [limited.get("/reversal/models").status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = limited.get("/reversal/models")
        assert r.headers["retry-after"] == "1" and "too many requests" in r.json()["error"]
        assert limited.get("/health").status_code == 200  # probes are never throttled
        other = limited.get("/reversal/models", headers={"Authorization": "Bearer another-client-token"})
        assert other.status_code == 429  # an invalid bearer is no client of its own (issue 29)


@pytest.mark.parametrize("user", ["team/alice", "a/b/c", "/lead", "trail/", "50%/x", "sp ace/?#"])
def test_a_user_id_with_a_slash_can_be_erased(client, candle_json, experiment, user):
    """Issue 29, item 7: any accepted user id can be erased, by path (as is or %2F) or by query."""
    from urllib.parse import quote

    for form in ("path", "encoded", "query"):
        pid = _predict(client, candle_json, user).json()["data"]["prediction_id"]
        if form == "query":
            r = client.delete("/reversal/users/predictions", params={"user_id": user})
        else:
            safe = "/" if form == "path" else ""
            r = client.delete(f"/reversal/users/{quote(user, safe=safe)}/predictions")
        assert r.status_code == 200, (form, r.text)
        assert r.json()["data"] == {"user_id": user, "deleted": 1}, form
        assert client.post(f"/reversal/predictions/{pid}/outcome", json={"pips": 1.0}).status_code == 404


def test_dot_segment_user_ids_are_erased_by_query(client, candle_json, experiment):
    for user in (".", ".."):
        _predict(client, candle_json, user)
        r = client.delete("/reversal/users/predictions", params={"user_id": user})
        assert r.status_code == 200 and r.json()["data"]["deleted"] == 1, r.text
