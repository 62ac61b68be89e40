"""Issue 11, finding 1 (API part): outcomes need a write token, the salt is shown to admin callers only.

The guarded apps are the service's FastAPI app built with tokens set, over the session's parts (same
stage runners and state database as the open `client` fixture, which runs without tokens).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from aifx.http import access
from aifx.http import app as app_module
from aifx.serving.errors import ApiError
from aifx.settings import Settings
from aifx_client import AIFXClient

pytestmark = pytest.mark.http

ADMIN_TOKEN = "admin-token-for-outcome-tests-0123456789"
OUTCOME_TOKEN = "outcome-token-for-outcome-tests-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITER = {"Authorization": f"Bearer {OUTCOME_TOKEN}"}
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
VERSIONS = ("v3.1", "v3.0", "v2.9")


def guarded_client(client, settings: Settings) -> Iterator:
    from starlette.testclient import TestClient

    from aifx.http.bootstrap import app

    guarded_app = app_module.create_app(settings)
    guarded_app.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(guarded_app) as c:
            yield c


@pytest.fixture
def both_tokens(client) -> Iterator:
    """AIFX_ADMIN_TOKEN and AIFX_OUTCOME_TOKEN set."""
    settings = Settings(admin_token=ADMIN_TOKEN, outcome_token=OUTCOME_TOKEN, versions=VERSIONS)
    yield from guarded_client(client, settings)


@pytest.fixture
def admin_only(client) -> Iterator:
    """Only AIFX_ADMIN_TOKEN set: the admin token is the outcome write token too."""
    yield from guarded_client(client, Settings(admin_token=ADMIN_TOKEN, versions=VERSIONS))


def served(client, candle_json, user: str) -> str:
    """The prediction_id of a prediction served under the active experiment."""
    r = client.post("/reversal/predict", json={**PAIR, "data": candle_json(3100, 80), "user_id": user})
    assert r.status_code == 200, r.text
    return r.json()["data"]["prediction_id"]


def outcomes(client, eid: str) -> int:
    variants = client.get(f"/reversal/experiments/{eid}/metrics").json()["data"]["variants"]
    return sum(variants[v]["metrics"]["outcomes"]["count"] for v in ("A", "B"))


def test_anonymous_and_wrong_outcomes_are_refused_and_change_nothing(both_tokens, candle_json, experiment):
    pid = served(both_tokens, candle_json, "forger")
    path = f"/reversal/predictions/{pid}/outcome"
    r = both_tokens.post(path, json={"pips": 50.0})
    assert r.status_code == 401 and "AIFX_OUTCOME_TOKEN" in r.json()["error"], r.text
    assert r.headers["www-authenticate"] == "Bearer"
    for wrong in ({"Authorization": "Bearer guessed"}, {"Authorization": f"Bearer {OUTCOME_TOKEN}x"}):
        r = both_tokens.post(path, json={"pips": 50.0}, headers=wrong)
        assert r.status_code == 403 and "AIFX_OUTCOME_TOKEN" in r.json()["error"], r.text
    r = both_tokens.post(path, json={"pips": 50.0}, headers={**WRITER, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "another site" in r.json()["error"], r.text
    assert outcomes(both_tokens, experiment["experiment_id"]) == 0


def test_the_outcome_token_and_the_admin_token_record_outcomes(both_tokens, candle_json, experiment):
    first, second = served(both_tokens, candle_json, "writer-1"), served(both_tokens, candle_json, "writer-2")
    r = both_tokens.post(f"/reversal/predictions/{first}/outcome", json={"pips": 12.5}, headers=WRITER)
    assert r.status_code == 201, r.text
    r = both_tokens.post(f"/reversal/predictions/{second}/outcome", json={"pips": -3.0}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert outcomes(both_tokens, experiment["experiment_id"]) == 2


def test_the_outcome_token_is_no_admin_token(both_tokens):
    r = both_tokens.post("/reversal/models/v3.1/switch", headers=WRITER)
    assert r.status_code == 403 and "not AIFX_ADMIN_TOKEN" in r.json()["error"], r.text


def test_with_only_the_admin_token_set_it_guards_outcomes(admin_only, candle_json, experiment):
    pid = served(admin_only, candle_json, "admin-writer")
    path = f"/reversal/predictions/{pid}/outcome"
    assert admin_only.post(path, json={"pips": 1.0}).status_code == 401
    assert admin_only.post(path, json={"pips": 1.0}, headers=ADMIN).status_code == 201


@pytest.mark.unit
def test_the_outcome_route_is_open_only_without_any_token():
    local = {"client": ("127.0.0.1", 1), "headers": [(b"host", b"localhost:3000")]}
    access.check_outcome(Settings(), local)
    for settings in (Settings(admin_token=ADMIN_TOKEN), Settings(outcome_token=OUTCOME_TOKEN)):
        with pytest.raises(ApiError) as err:
            access.check_outcome(settings, local)
        assert err.value.status == 401


def test_the_client_sends_the_outcome_token(both_tokens, candle_json, experiment):
    pid = served(both_tokens, candle_json, "client-writer")
    transport = both_tokens._transport  # the TestClient's in-process transport
    with AIFXClient("http://testserver", outcome_token=OUTCOME_TOKEN, transport=transport) as aifx:
        assert aifx.record_outcome(pid, 4.0).created is True
    with AIFXClient("http://testserver", admin_token=ADMIN_TOKEN, transport=transport) as aifx:
        assert aifx.record_outcome(pid, 4.0).created is False  # the admin token works too (same pips again)


# ---- the salt -----------------------------------------------------------------------------------


def listed(c, eid: str, headers: dict | None = None) -> dict:
    r = c.get("/reversal/experiments", headers=headers or {})
    assert r.status_code == 200, r.text
    return next(e for e in r.json()["data"]["experiments"] if e["experiment_id"] == eid)


def test_the_salt_is_hidden_from_non_admin_callers(client, both_tokens, experiment):
    eid = experiment["experiment_id"]
    assert "salt" in experiment  # the admin route's answer (open app: admin routes are open)
    assert "salt" not in listed(client, eid)  # open app, no token: nobody is an admin caller
    for headers in ({}, WRITER, {"Authorization": "Bearer wrong"}):
        assert "salt" not in listed(both_tokens, eid, headers)
    for c in (client, both_tokens):
        metrics = c.get(f"/reversal/experiments/{eid}/metrics").json()["data"]
        assert "salt" not in metrics


def test_admin_callers_see_the_salt(both_tokens, experiment):
    assert listed(both_tokens, experiment["experiment_id"], ADMIN)["salt"] == experiment["salt"]
    stopped = both_tokens.post(f"/reversal/experiments/{experiment['experiment_id']}/stop", headers=ADMIN)
    assert stopped.status_code == 200 and stopped.json()["data"]["salt"] == experiment["salt"]
