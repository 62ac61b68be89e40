"""/docs.json names a schema for every 2xx body, and real answers of every route match it."""

from __future__ import annotations

import uuid

import jsonschema_rs
import pytest

from aifx.http.native import ROUTES

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
NATIVE = set(ROUTES.values())
BENTOML_PROBES = {"/healthz", "/livez", "/readyz", "/metrics"}  # BentoML's own text/plain endpoints


@pytest.fixture(scope="module")
def document(client) -> dict:
    return client.get("/docs.json").json()


def _schema_of(document: dict, path: str, method: str, status: int) -> dict:
    """The documented JSON schema of one response, resolvable against the whole document."""
    content = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    return {**content["schema"], "components": document["components"]}


def test_every_route_names_its_2xx_body(document):
    named = []
    for path, ops in document["paths"].items():
        if path in BENTOML_PROBES:
            continue
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    continue
                if "application/json" not in response["content"]:  # the signal stream: Server-Sent Events
                    assert set(response["content"]) == {"text/event-stream"}, (method, path)
                    continue
                schema = response["content"]["application/json"]["schema"]
                if path in NATIVE:  # BentoML inlines a native API's output schema
                    assert schema["properties"] and schema.get("additionalProperties") is False, path
                    continue
                ref = schema.get("$ref", "")
                assert ref.startswith("#/components/schemas/"), (method, path, status, response)
                component = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
                assert component["properties"] and component.get("additionalProperties") is False, ref
                named.append((method, path))
    # the seed's routes, the admin erasure route, POST candles, and issue 13's evaluation, promotion
    # (list, and put/delete by version) and decisions routes, issue 14's reload, issue 26's anchor reset,
    # issue 29's erasure by query, issue 30's latest signal event and issue 26's SRM reset
    assert len({p for _, p in named}) == 24
    assert ("post", "/reversal/promotion/{challenger}/reset") in named
    assert ("post", "/reversal/experiments/{experiment_id}/srm/reset") in named
    assert NATIVE <= set(document["paths"])
    assert ("put", "/reversal/predictions/{prediction_id}/outcome") in named


def test_no_field_is_a_bare_object(document):
    """Every property has a type or a reference; an open map says what its values are."""
    for name, component in document["components"]["schemas"].items():
        for field, schema in component.get("properties", {}).items():
            assert schema, f"{name}.{field} is undescribed"
            if schema.get("type") == "object":
                assert "additionalProperties" in schema or "properties" in schema, f"{name}.{field}"


def _check(document: dict, path: str, method: str, response) -> dict:
    body = response.json()
    schema = _schema_of(document, path, method, response.status_code)
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(body)]
    assert errors == [], f"{method.upper()} {path} {response.status_code}: {errors[:5]}"
    return body


def test_real_answers_of_every_route_match_the_document(client, document, candle_json):
    data = {**PAIR, "data": candle_json(3000, 80)}
    _check(document, "/health", "get", client.get("/health"))
    _check(document, "/reversal/predict", "post", client.post("/reversal/predict", json=data))
    fired = {**PAIR, "data": candle_json(3000, 80), "version": "v2.9"}  # threshold 0: the rule's direction
    _check(document, "/reversal/predict", "post", client.post("/reversal/predict", json=fired))
    batch = {"items": [data, fired, {"pair": "x"}]}
    _check(document, "/reversal/predict/batch", "post", client.post("/reversal/predict/batch", json=batch))
    _check(document, "/reversal/compare", "post", client.post("/reversal/compare", json=data))
    _check(document, "/reversal/models", "get", client.get("/reversal/models"))
    _check(document, "/reversal/models/{version}", "get", client.get("/reversal/models/v2.9"))
    switched = client.post("/reversal/models/v3.1/switch")
    _check(document, "/reversal/models/{version}/switch", "post", switched)
    _check(document, "/reversal/models/reload", "post", client.post("/reversal/models/reload"))
    _check(document, "/predict", "post", client.post("/predict", json=data))
    _experiment_routes(client, document, candle_json)


def _experiment_routes(client, document: dict, candle_json) -> None:
    eid = f"doc-{uuid.uuid4().hex[:8]}"
    spec = {"experiment_id": eid, "name": "schema", "variant_a": "v3.0", "variant_b": "v3.1"}
    _check(document, "/reversal/experiments", "post", client.post("/reversal/experiments", json=spec))
    path = "/reversal/experiments/{experiment_id}"
    _check(document, f"{path}/activate", "post", client.post(f"/reversal/experiments/{eid}/activate"))
    _check(document, "/reversal/experiments", "get", client.get("/reversal/experiments"))
    predicted = client.post("/reversal/predict", json={**PAIR, "data": candle_json(3100, 80), "user_id": "doc-user"})
    prediction_id = _check(document, "/reversal/predict", "post", predicted)["data"]["prediction_id"]
    outcome = client.post(f"/reversal/predictions/{prediction_id}/outcome", json={"pips": 3.5})
    _check(document, "/reversal/predictions/{prediction_id}/outcome", "post", outcome)
    corrected = client.put(f"/reversal/predictions/{prediction_id}/outcome", json={"pips": -1.5})
    _check(document, "/reversal/predictions/{prediction_id}/outcome", "put", corrected)
    _check(document, f"{path}/metrics", "get", client.get(f"/reversal/experiments/{eid}/metrics"))
    _check(document, f"{path}/srm/reset", "post", client.post(f"/reversal/experiments/{eid}/srm/reset"))
    _check(document, f"{path}/metrics", "get", client.get(f"/reversal/experiments/{eid}/metrics"))  # with a baseline
    erased = client.delete("/reversal/users/doc-user/predictions")
    _check(document, "/reversal/users/{user_id}/predictions", "delete", erased)
    _check(document, f"{path}/stop", "post", client.post(f"/reversal/experiments/{eid}/stop"))


def test_error_answers_match_the_error_schema(client, document):
    r = client.get("/reversal/models/v9.9")
    assert r.status_code == 404
    schema = {"$ref": "#/components/schemas/ErrorBody", "components": document["components"]}
    assert jsonschema_rs.validator_for(schema).is_valid(r.json()), r.json()


def test_real_answers_of_every_native_api_match_the_document(client, document, candle_json):
    data = {**PAIR, "data": candle_json(3000, 80)}
    fired = {**data, "version": "v2.9"}
    calls = {
        "predict": fired,
        "predict_batch": {"items": [data, fired, {"pair": "x"}]},
        "compare": data,
        "list_models": {},
        "describe_model": {"version": "v2.9"},
        "switch_model": {"version": "v3.1"},
    }
    for name, body in calls.items():
        _check(document, ROUTES[name], "post", client.post(ROUTES[name], json=body))
