"""Admin authentication: every admin route with no token (401), a wrong one (403) and the right one.

The guarded app is the service's FastAPI app built with AIFX_ADMIN_TOKEN set, over the session's
engine (same stage runners and state database as the `client` fixture).
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Iterator

import pytest

from aifx.http import access
from aifx.http import app as app_module
from aifx.serving.errors import ApiError
from aifx.settings import Settings

TOKEN = "a-long-admin-token-0123456789-abcdefgh"  # at least 32 characters (Settings refuses shorter ones)
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
LOCAL = {"client": ("127.0.0.1", 1), "headers": [(b"host", b"localhost:3000")]}
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

    from aifx.http.bootstrap import app

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
        ("/reversal/models/reload", None, 200),
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

    monkeypatch.setattr(access.hmac, "compare_digest", spy)
    settings = Settings(admin_token=TOKEN)
    access.check_admin(settings, with_bearer(TOKEN))
    for given in ("x", TOKEN * 10):
        with pytest.raises(ApiError) as err:
            access.check_admin(settings, with_bearer(given))
        assert err.value.status == 403
    assert len(seen) == 3 and all(len(a) == len(b) == hashlib.sha256().digest_size for a, b in seen)


@pytest.mark.unit
def test_no_token_configured_leaves_admin_routes_open_to_local_callers():
    access.check_admin(Settings(admin_token=None), LOCAL)
    any_bearer = {**LOCAL, "headers": [*LOCAL["headers"], *with_bearer("x")["headers"]]}
    access.check_admin(Settings(admin_token=None), any_bearer)


def with_bearer(token: str) -> dict:
    """An ASGI scope of a request with this bearer token."""
    return {"client": ("192.0.2.1", 1), "headers": [(b"authorization", f"Bearer {token}".encode())]}


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


# ---- issue 11, finding 8: no cross-site triggering, JSON content types only -------------------------

CROSS_SITE = [{"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
              {"Origin": "https://evil.example"}, {"Origin": "null"},
              {"Origin": "http://localhost.evil.example"}]  # fmt: skip
SAME_SITE = [{}, {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, {"Sec-Fetch-Site": "none"},
             {"Origin": "http://localhost"}]  # fmt: skip


def active_version(c) -> str:
    return c.get("/reversal/models").json()["data"]["active_version"]


@pytest.mark.http
@pytest.mark.parametrize("headers", CROSS_SITE, ids=["fetch-cross-site", "fetch-same-site", "origin", "null", "suffix"])
def test_open_admin_routes_refuse_cross_site_posts(client, headers):
    """Without a token (development/test) a web page of another site cannot make a browser switch or stop."""
    before = active_version(client)
    other = "v3.0" if before != "v3.0" else "v3.1"
    for path in (f"/reversal/models/{other}/switch", "/reversal/experiments/x-cross/activate"):
        r = client.post(path, headers=headers)
        assert_error(r, 403, "another site")
    assert active_version(client) == before


@pytest.mark.http
def test_cross_site_posts_are_refused_with_the_token_too(guarded):
    r = guarded.post("/reversal/models/v3.0/switch", headers={**RIGHT_TOKEN[0], **CROSS_SITE[0]})
    assert_error(r, 403, "another site")


@pytest.mark.http
@pytest.mark.parametrize("headers", SAME_SITE, ids=["cli", "same-origin", "typed-url", "old-browser-same-origin"])
def test_same_site_and_non_browser_admin_posts_still_work(client, headers):
    for version in ("v3.0", "v3.1"):
        r = client.post(f"/reversal/models/{version}/switch", headers=headers)
        assert r.status_code == 200, r.text
    assert active_version(client) == "v3.1"


FORM_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
              "multipart/form-data; boundary=xyz", "application/xml"]  # fmt: skip


def json_routes(candle_json) -> list[tuple[str, dict | None]]:
    """Every POST route with a valid body (None: a route without a body)."""
    body = {**PAIR, "data": candle_json(3200, 80)}
    return [
        ("/reversal/predict", body),
        ("/reversal/predict/batch", {"items": [body]}),
        ("/reversal/compare", body),
        ("/predict", {"data": body["data"]}),
        ("/reversal/experiments", experiment_body(f"ct-{uuid.uuid4().hex[:8]}")),
        ("/reversal/predictions/00000000-0000-0000-0000-000000000000/outcome", {"pips": 1.0}),
        ("/reversal/models/v3.1/switch", None),
    ]


@pytest.mark.http
@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_json_routes_answer_415_to_form_and_text_bodies(client, candle_json, content_type):
    for path, body in json_routes(candle_json):
        raw = json.dumps(body).encode() if body is not None else b""
        r = client.post(path, content=raw, headers={"Content-Type": content_type})
        assert_error(r, 415, "Content-Type: application/json")
        assert r.json()["request_id"] and content_type.split(";")[0] in r.json()["error"]


@pytest.mark.http
def test_json_and_a_missing_content_type_are_accepted(client, candle_json):
    body = {**PAIR, "data": candle_json(3200, 80)}
    for headers in ({"Content-Type": "application/json; charset=utf-8"}, {}):
        r = client.post("/reversal/predict", content=json.dumps(body).encode(), headers=headers)
        assert r.status_code == 200, r.text
        assert headers or "content-type" not in r.request.headers  # old clients that send none
    r = client.post("/reversal/models/v3.1/switch")  # bodiless admin POST without a Content-Type
    assert r.status_code == 200, r.text
