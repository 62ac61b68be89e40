"""Admin authentication: every admin route with no token (401), a wrong one (403) and the right one.

The guarded app is the service's FastAPI app built with AIFX_ADMIN_TOKEN set, over the session's
engine (same stage services and state database as the `client` fixture).
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections.abc import Iterator

import pytest

from aifx.api import app as app_module
from aifx.api.errors import ApiError
from aifx.settings import Settings

TOKEN = "a-long-admin-token-0123456789"
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
NO_TOKEN = [{}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer   "},
            {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}]  # fmt: skip
WRONG_TOKEN = [{"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
               {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Bearer {TOKEN.upper()}"}]  # fmt: skip
RIGHT_TOKEN = [{"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"bearer {TOKEN}"},
               {"Authorization": f"Bearer  {TOKEN} "}]  # fmt: skip


@pytest.fixture
def guarded(client) -> Iterator:
    """TestClient over an app that requires TOKEN, sharing the session parts; state restored afterwards."""
    from starlette.testclient import TestClient

    from aifx.api.bootstrap import app

    guarded_app = app_module.create_app(Settings(admin_token=TOKEN, versions=("v3.1", "v3.0", "v2.9")))
    guarded_app.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(guarded_app) as c:
            yield c
    active = client.get("/reversal/experiments").json()["data"]["active_experiment_id"]
    if active:
        client.post(f"/reversal/experiments/{active}/stop")
    client.post("/reversal/models/v3.1/switch")


def experiment_body(eid: str) -> dict:
    return {"experiment_id": eid, "name": "auth test", "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5}


def admin_calls(eid: str) -> list[tuple[str, dict | None, int]]:
    """Every admin route in an order that succeeds with the right token: (path, body, expected status)."""
    return [
        ("/reversal/models/v3.0/switch", None, 200),
        ("/reversal/experiments", experiment_body(eid), 201),
        (f"/reversal/experiments/{eid}/activate", None, 200),
        (f"/reversal/experiments/{eid}/stop", None, 200),
        ("/reversal/models/v3.1/switch", None, 200),
    ]


def assert_error(response, status: int, part: str) -> None:
    """An error envelope with this status and a message that names the token."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["data"] is None and part in body["error"]


@pytest.mark.http
@pytest.mark.parametrize("headers", NO_TOKEN, ids=["none", "empty", "bearer-only", "bearer-blank", "basic", "bare"])
def test_admin_routes_without_a_token_are_401(guarded, headers):
    for path, body, _ in admin_calls(f"auth-{uuid.uuid4().hex[:8]}"):
        r = guarded.post(path, json=body, headers=headers)
        assert_error(r, 401, "Authorization: Bearer <AIFX_ADMIN_TOKEN>")
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.http
@pytest.mark.parametrize("headers", WRONG_TOKEN, ids=["wrong", "longer", "shorter", "case"])
def test_admin_routes_with_a_wrong_token_are_403(guarded, headers):
    for path, body, _ in admin_calls(f"auth-{uuid.uuid4().hex[:8]}"):
        assert_error(guarded.post(path, json=body, headers=headers), 403, "not AIFX_ADMIN_TOKEN")


@pytest.mark.http
@pytest.mark.parametrize("headers", RIGHT_TOKEN, ids=["exact", "lowercase-scheme", "extra-spaces"])
def test_admin_routes_with_the_right_token_work(guarded, headers):
    eid = f"auth-{uuid.uuid4().hex[:8]}"
    for path, body, status in admin_calls(eid):
        r = guarded.post(path, json=body, headers=headers)
        assert r.status_code == status, (path, r.text)
        assert r.json()["success"] is True
    assert guarded.get(f"/reversal/experiments/{eid}/metrics").json()["data"]["status"] == "stopped"


@pytest.mark.http
def test_rejected_admin_calls_change_nothing(guarded):
    before = guarded.get("/reversal/models").json()["data"]["active_version"]
    eid = f"auth-{uuid.uuid4().hex[:8]}"
    guarded.post("/reversal/models/v3.0/switch", headers={"Authorization": "Bearer wrong"})
    guarded.post("/reversal/experiments", json=experiment_body(eid))
    assert guarded.get("/reversal/models").json()["data"]["active_version"] == before
    assert guarded.get(f"/reversal/experiments/{eid}/metrics").status_code == 404


@pytest.mark.http
def test_read_routes_and_predict_stay_open(guarded, candle_json):
    body = {**PAIR, "data": candle_json(3200, 80)}
    for path in ("/health", "/reversal/models", "/reversal/models/v3.1", "/reversal/experiments"):
        assert guarded.get(path).status_code == 200, path
    assert guarded.post("/reversal/predict", json={**body, "user_id": "reader"}).status_code == 200
    assert guarded.post("/reversal/predict/batch", json={"items": [body]}).status_code == 200
    assert guarded.post("/reversal/compare", json=body).status_code == 200
    assert guarded.post("/predict", json={"data": body["data"]}).status_code == 200


@pytest.mark.unit
def test_token_is_compared_in_constant_time(monkeypatch):
    """check_admin compares fixed-length digests with hmac.compare_digest (no early exit, no length leak)."""
    seen: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return a == b

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    settings = Settings(admin_token=TOKEN)
    app_module.check_admin(settings, f"Bearer {TOKEN}")
    for given in ("x", TOKEN * 10):
        with pytest.raises(ApiError) as err:
            app_module.check_admin(settings, f"Bearer {given}")
        assert err.value.status == 403
    assert len(seen) == 3 and all(len(a) == len(b) == hashlib.sha256().digest_size for a, b in seen)


@pytest.mark.unit
def test_no_token_configured_leaves_admin_routes_open():
    app_module.check_admin(Settings(admin_token=None), None)
    app_module.check_admin(Settings(admin_token=None), "Bearer anything")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/reversal/experiments", {"experiment_id": "x", "traffic_split": "not a number"}),
        ("/reversal/experiments", None),
        ("/reversal/experiments/" + "x" * 200 + "/activate", None),
        ("/reversal/models/" + "v" * 200 + "/switch", None),
    ],
)
def test_token_is_checked_before_the_request_is_validated(guarded, path, body):
    """A caller without the token learns nothing about what the route would accept: 401, not 422."""
    r = guarded.post(path, json=body) if body is not None else guarded.post(path)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"] == "Bearer"
