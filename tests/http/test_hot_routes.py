"""The hot routes (aifx/http/hot_routes.py) answer exactly as the REST app's own routes: status, envelope, message
and headers, for every bad body of the routes table, good bodies with and without a token, and the guards."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from aifx.http.hot_routes import HOT
from tests.http.conftest import LOCAL_PEER
from tests.http.test_routes import BAD, PAIR

pytestmark = pytest.mark.http
HOT_BAD = [case for case in BAD if case[1] in HOT]


@pytest.fixture(scope="module")
def rest(client):
    """A client of the REST app alone (its router serves the hot paths); the service's parts stay attached."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    from aifx.http.bootstrap import app

    return TestClient(app, base_url="http://localhost", client=LOCAL_PEER)  # no lifespan: the parts are the service's


def _same(a: Any, b: Any) -> None:
    """Two answers alike but for their time stamps and request ids."""
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers.get("content-type") == b.headers.get("content-type")
    assert ("www-authenticate" in a.headers) == ("www-authenticate" in b.headers)
    assert ("x-request-id" in a.headers) and ("x-request-id" in b.headers)
    left, right = _stable(a.json()), _stable(b.json())
    assert left == right


def _stable(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: _stable(v) for k, v in payload.items() if k not in ("timestamp", "request_id", "prediction_id")}
    if isinstance(payload, list):
        return [_stable(v) for v in payload]
    return payload


def test_every_hot_path_is_a_route_of_the_rest_app():
    from aifx.http.bootstrap import app

    posts = {r.path for r in app.routes if "POST" in getattr(r, "methods", ())}
    assert set(HOT) <= posts
    assert len(HOT_BAD) >= 60  # the bad bodies of predict and batch in the routes table


@pytest.mark.parametrize(("name", "path", "build", "status", "part"), HOT_BAD, ids=[c[0] for c in HOT_BAD])
def test_a_bad_body_gets_the_rest_routes_answer(client, rest, candle_json, name, path, build, status, part):
    body = build(candle_json)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    hot, plain = client.post(path, content=content, headers=headers), rest.post(path, content=content, headers=headers)
    assert hot.status_code == status, hot.text
    assert part.lower() in hot.json()["error"].lower()
    _same(hot, plain)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_good_predicts_and_batches_get_the_rest_routes_answer(client, rest, candle_json, token):
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    for stop in (3000, 3100, 3200):
        body = {**PAIR, "data": candle_json(stop, 80)}
        hot = client.post("/reversal/predict", json=body, headers=headers)
        plain = rest.post("/reversal/predict", json=body, headers=headers)
        assert hot.status_code == 200, hot.text
        _same(hot, plain)
    items = {"items": [{**PAIR, "data": candle_json(s, 70)} for s in (3300, 3400)] + [{**PAIR, "data": []}]}
    hot, plain = (c.post("/reversal/predict/batch", json=items, headers=headers) for c in (client, rest))
    assert hot.status_code == 200 and hot.json()["data"]["results"][2]["success"] is False
    _same(hot, plain)


def test_the_token_is_judged_as_the_rest_route_judges_it(client, rest, candle_json, monkeypatch):
    """Trusted (outcome or admin token) or not, seen by the predictor; a recording predictor keeps the session's
    stored candles untouched (a trusted predict stores its candles)."""
    from aifx.http.bootstrap import app

    seen: list[tuple[str, bool]] = []

    async def predict(req: Any, trusted: bool = False) -> dict:
        seen.append(("predict", trusted))
        return {"pair": req.pair}

    async def predict_many(items: Any, trusted: bool = False) -> dict:
        seen.append(("batch", trusted))
        return {"results": []}

    monkeypatch.setattr(app.state.parts.predictor, "predict", predict)
    monkeypatch.setattr(app.state.parts.predictor, "predict_many", predict_many)
    monkeypatch.setattr(app.state.settings, "outcome_token", _secret("outcome-secret"))
    monkeypatch.setattr(app.state.settings, "admin_token", _secret("admin-secret"))
    body = {**PAIR, "data": candle_json(3000, 80)}
    for bearer, trusted in [(None, False), ("wrong", False), ("outcome-secret", True), ("admin-secret", True)]:
        headers = {} if bearer is None else {"authorization": f"Bearer {bearer}"}
        for c in (client, rest):
            c.post("/reversal/predict", json=body, headers=headers)
            c.post("/reversal/predict/batch", json={"items": [body]}, headers=headers)
        expected = [("predict", trusted), ("batch", trusted)]
        assert seen == expected * 2, (bearer, seen)
        seen.clear()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_a_body_that_is_not_json_is_415_on_both(client, rest, candle_json, content_type):
    content = json.dumps({**PAIR, "data": candle_json(3000, 80)}).encode()
    for path in HOT:
        hot = client.post(path, content=content, headers={"content-type": content_type})
        plain = rest.post(path, content=content, headers={"content-type": content_type})
        assert hot.status_code == 415
        _same(hot, plain)


def test_before_the_parts_are_attached_both_answer_503(client, rest, candle_json):
    from aifx.http.bootstrap import app

    parts, app.state.parts = app.state.parts, None  # State keeps attributes in a dict: set back by hand
    try:
        body = {**PAIR, "data": candle_json(3000, 80)}
        hot, plain = client.post("/reversal/predict", json=body), rest.post("/reversal/predict", json=body)
    finally:
        app.state.parts = parts
    assert hot.status_code == 503
    _same(hot, plain)


def test_an_unexpected_error_is_the_apps_500_with_an_error_id(client, candle_json, monkeypatch):
    from aifx.http.bootstrap import app

    def broken(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.state.parts.predictor, "predict", broken)
    r = client.post("/reversal/predict", json={**PAIR, "data": candle_json(3000, 80)})
    assert r.status_code == 500
    assert "error id" in r.json()["error"] and "secret" not in r.text


def test_other_methods_and_paths_still_reach_the_router(client):
    assert client.get("/reversal/predict").status_code == 405
    assert client.post("/reversal/predict/", json={}).status_code in (404, 405, 307)


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)
