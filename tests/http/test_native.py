"""Issue 16 in-process: the BentoML-native APIs give the REST routes' answers, under the same protections."""

from __future__ import annotations

import json
import os
import uuid

import pytest
from pydantic import SecretStr

from aifx.http.native import ROUTES
from aifx.http.responses import ModelInfo, ModelsData, PredictionData

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
TOKEN = "a-long-admin-token-0123456789-abcdefgh"
SERVED_FIELDS = ("pair", "timeframe", "signal", "confidence", "stage1_prob", "stage2_prob", "model_version", "factors")


def served(data: dict) -> dict:
    """What a client is served, whether an unset field is absent (REST) or null (native)."""
    return PredictionData.model_validate(data).model_dump(include=set(SERVED_FIELDS))


def parts():
    from aifx.http.bootstrap import app

    return app.state.parts


def rest(client, path: str, body: dict | None = None, **kw):
    r = client.post(path, json=body, **kw) if body is not None else client.get(path, **kw)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def native(client, name: str, body: dict | None = None, **kw):
    r = client.post(ROUTES[name], json=body if body is not None else {}, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_schema_lists_every_native_api_with_its_input_schema(client):
    routes = {r["name"]: r for r in client.get("/schema.json").json()["routes"]}
    assert {name: routes[name]["route"] for name in ROUTES} == ROUTES
    assert {"pair", "timeframe", "data", "features", "user_id", "version"} <= set(
        routes["predict"]["input"]["properties"]
    )
    assert set(routes["predict_batch"]["input"]["properties"]) == {"items"}
    assert set(routes["describe_model"]["input"]["properties"]) == {"version"}
    assert set(routes["experiment_metrics"]["input"]["properties"]) == {"experiment_id"}


def test_native_predict_equals_the_rest_route_on_200_windows(client, candles, candle_json):
    differ, step = [], (len(candles) - 100) // 200
    for i in range(200):
        body = {**PAIR, "data": candle_json(100 + step * i, 64)}
        a, b = rest(client, "/reversal/predict", body), native(client, "predict", body)
        if served(a) != served(b):
            differ.append(i)
    assert differ == []


def test_batch_compare_and_model_routes_equal_the_rest_routes(client, candle_json):
    body = {**PAIR, "data": candle_json(2_500, 64)}
    items = [body, {**body, "version": "v3.0"}, {"pair": "EUR/USD"}]
    batch_rest, batch_native = (
        rest(client, "/reversal/predict/batch", {"items": items}),
        native(client, "predict_batch", {"items": items}),
    )
    assert [r["success"] for r in batch_native["results"]] == [True, True, False]
    assert batch_native["results"][2]["error"] == batch_rest["results"][2]["error"]
    for a, b in zip(batch_rest["results"][:2], batch_native["results"][:2], strict=True):
        assert served(a["data"]) == served(b["data"])
    cmp_rest, cmp_native = rest(client, "/reversal/compare", body), native(client, "compare", body)
    assert cmp_native["predictions"] == cmp_rest["predictions"] and cmp_native["consensus"] == cmp_rest["consensus"]
    same = ModelsData.model_validate  # absent (REST) and null (native) are the same value
    assert agree(lambda: same(rest(client, "/reversal/models")), lambda: same(native(client, "list_models")))
    one = ModelInfo.model_validate
    v30 = {"version": "v3.0"}
    assert agree(lambda: one(rest(client, "/reversal/models/v3.0")), lambda: one(native(client, "describe_model", v30)))


def agree(read_rest, read_native, attempts: int = 20) -> bool:
    """Whether both faces answer alike while nothing changes (the write-behind log and resolver run meanwhile)."""
    for _ in range(attempts):
        before, answer, after = read_rest(), read_native(), read_rest()
        if before == after:
            return answer == before
    raise AssertionError(f"the live figures kept changing over {attempts} reads")


def test_under_an_experiment_each_request_is_recorded_once_with_the_same_variant_on_both_faces(
    client, candle_json, experiment
):
    eid = experiment["experiment_id"]

    def total() -> int:
        variants = native(client, "experiment_metrics", {"experiment_id": eid})["variants"]
        return sum(variants[v]["metrics"]["count"] for v in ("A", "B"))

    assert native(client, "experiment_metrics", {"experiment_id": eid})["experiment_id"] == eid
    before = total()
    for i in range(12):
        body = {**PAIR, "data": candle_json(3_000 + 7 * i, 64), "user_id": f"both-faces-{i}"}
        a, b = rest(client, "/reversal/predict", body), native(client, "predict", body)
        assert (a["experiment_id"], a["variant"]) == (b["experiment_id"], b["variant"]) == (eid, a["variant"])
        assert a["prediction_id"] != b["prediction_id"]
    assert total() == before + 24
    key = {"Idempotency-Key": f"native-{uuid.uuid4().hex}"}
    body = {**PAIR, "data": candle_json(3_500, 64), "user_id": "retrying-user"}
    first = rest(client, "/reversal/predict", body, headers=key)
    again = native(client, "predict", body, headers=key)  # a retry through the other face: the same record
    assert again["prediction_id"] == first["prediction_id"] and total() == before + 25


def test_native_errors_keep_the_rest_status_and_message(client):
    r = client.post(ROUTES["describe_model"], json={"version": "v9.9"})
    assert r.status_code == 404 and "unknown model version 'v9.9'" in r.json()["error"]
    assert r.json()["request_id"] == r.headers["x-request-id"]
    r = client.post(ROUTES["experiment_metrics"], json={"experiment_id": "no-such-experiment"})
    assert r.status_code == 404 and "not found" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pair": "EUR/USD"}, "timeframe"),
        ({**PAIR, "data": []}, "no input"),
        ({**PAIR, "data": [{"timestamp": 1, "open": 1, "high": -1, "low": 1, "close": 1}]}, "high"),
        ({**PAIR, "features": [[1e308 * 10]]}, "features"),
        ({**PAIR, "features": [[1.0]], "user_id": "a\nb"}, "user_id"),
        ({**PAIR, "features": [[1.0]], "version": "v" * 65}, "version"),
    ],
)
def test_bad_native_input_is_400_naming_the_field(client, body, field):
    text = json.dumps(body).replace("Infinity", "1e999")
    r = client.post(ROUTES["predict"], content=text, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert field in r.text


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[]", b"null", b'"text"', b"[" * 5_000, b'{"items": 5}', b'{"version": 3}']
)
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_hostile_native_bodies_are_4xx_never_500(client, name, raw):
    r = client.post(ROUTES[name], content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 or (r.status_code == 200 and name in ("list_models", "switch_model")), (
        r.status_code,
        r.text,
    )


def test_native_routes_take_the_rest_routes_body_limits(client, candle_json):
    settings = parts().registry.settings
    pad = " " * settings.max_predict_body_bytes
    r = client.post(ROUTES["predict"], content=json.dumps(PAIR) + pad, headers={"content-type": "application/json"})
    assert r.status_code == 413 and f"{settings.max_predict_body_bytes:,} bytes" in r.json()["error"]
    batch = json.dumps({"items": [{**PAIR, "data": candle_json(900, 64)}]}) + pad
    r = client.post(ROUTES["predict_batch"], content=batch, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text  # the batch limit is the large one
    small = " " * settings.max_other_body_bytes
    r = client.post(ROUTES["describe_model"], content='{"version": "v3.1"}' + small,
                    headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 413


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"])
def test_native_routes_take_json_only(client, media):
    r = client.post(ROUTES["switch_model"], content=b'{"version": "v3.1"}', headers={"content-type": media})
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_native_request_id_is_echoed(client, candle_json):
    r = client.post(ROUTES["predict"], json={**PAIR, "data": candle_json(900, 64)}, headers={"X-Request-ID": "rid-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "rid-42"


@pytest.fixture
def admin_token(client, monkeypatch):
    """The session's registry requires TOKEN for admin calls during the test."""
    registry = parts().registry
    monkeypatch.setattr(registry, "settings", registry.settings.model_copy(update={"admin_token": SecretStr(TOKEN)}))
    yield TOKEN
    monkeypatch.undo()
    client.post("/reversal/models/v3.1/switch")


def test_native_switch_needs_the_admin_token(client, admin_token):
    route, body = ROUTES["switch_model"], {"version": "v3.0"}
    r = client.post(route, json=body)
    assert r.status_code == 401 and "AIFX_ADMIN_TOKEN" in r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(route, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and "not AIFX_ADMIN_TOKEN" in r.json()["error"]
    r = client.post(
        route, json=body, headers={"Authorization": f"Bearer {admin_token}", "Sec-Fetch-Site": "cross-site"}
    )
    assert r.status_code == 403 and "another site" in r.json()["error"]
    assert native(client, "list_models")["active_version"] == "v3.1"  # nothing changed so far
    r = client.post(route, json=body, headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200 and r.json() == {"active_version": "v3.0", "previous_version": "v3.1"}


def test_one_rate_limit_whichever_face_a_client_calls(client):
    """REST app and native guards built over the same buckets: the client's burst is spent across both."""
    from starlette.testclient import TestClient

    from aifx.http.app import create_app
    from aifx.http.asgi import ByteBudget
    from aifx.http.native import NativeGuards
    from aifx.http.ratelimit import TokenBuckets

    settings = parts().registry.settings
    buckets, budget = TokenBuckets(rate=0.001, burst=3), ByteBudget(settings.body_budget_bytes)
    rest_app = create_app(settings, buckets, budget)
    rest_app.state.parts = parts()

    async def native_app(scope, receive, send):  # stands in for BentoML's API route
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    guarded = NativeGuards(native_app, rest_app)  # the REST app's settings, buckets and budget
    native_client = TestClient(guarded)  # no lifespan: a bare ASGI app
    with TestClient(rest_app) as rest_client:
        assert rest_client.get("/reversal/models").status_code == 200
        assert native_client.post(ROUTES["list_models"], json={}).status_code == 200
        assert rest_client.get("/reversal/models").status_code == 200
        refused = native_client.post(ROUTES["list_models"], json={})
        assert refused.status_code == 429 and "retry after" in refused.json()["error"]
        assert rest_client.get("/reversal/models").status_code == 429


def test_a_second_worker_start_keeps_the_app_its_guards_and_their_shared_objects(client):
    """Start is idempotent (to_asgi() again: no guard twice); both faces' middlewares take the REST app's objects,
    and uvicorn's FORWARDED_ALLOW_IPS is the trusted proxies'."""
    from aifx.http.bootstrap import app
    from aifx.http.hot_routes import HotRoutes
    from aifx.http.native import NativeGuards
    from service import ReversalEngine

    shared = (app.state.settings, app.state.buckets, app.state.budget)
    stack = list(app.user_middleware)
    ReversalEngine.to_asgi()
    assert app.state.settings is shared[0] and app.state.buckets is shared[1] and app.state.budget is shared[2]
    assert app.user_middleware == stack and len(stack) == 3
    assert os.environ["FORWARDED_ALLOW_IPS"] == ",".join(app.state.settings.trusted_proxies)
    options = {cls: kwargs for cls, kwargs in ReversalEngine.middlewares}
    assert options[NativeGuards] == {"rest": app} and options[HotRoutes] == {"rest": app}
