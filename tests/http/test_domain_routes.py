"""Domains (issue 14 item 4): answers say whether the version was trained on the request's pair and timeframe,
requests outside are counted per version, and the model routes show each version's domain.

The session's v3.0 / v3.1 / v3.2 record EUR/USD 1h (tests/conftest.py DOMAIN); v2.9 records none (unknown).
"""

from __future__ import annotations

import pytest

from aifx.http.native import ROUTES

pytestmark = pytest.mark.http

INSIDE = {"pair": "EUR/USD", "timeframe": "1h"}
OUTSIDE = [
    {"pair": "GBP/JPY", "timeframe": "4h"},  # neither
    {"pair": "EUR/USD", "timeframe": "4h"},  # the timeframe only
    {"pair": "GBPUSD", "timeframe": "1h"},  # the pair only
]
DOMAIN = {"pairs": ["EUR/USD"], "timeframes": ["1h"]}


def out_of_domain(client, version: str) -> float:
    """aifx_out_of_domain_total{version} on /metrics (0 when the series is absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(client.get("/metrics").text)
    family = next((f for f in families if f.name == "aifx_out_of_domain"), None)
    samples = [] if family is None else family.samples
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels["version"] == version)


def predict(client, body: dict) -> dict:
    r = client.post("/reversal/predict", json=body)
    assert r.status_code == 200, r.text
    return r.json()["data"]


ALIASES = [INSIDE, {"pair": "eurusd", "timeframe": " 1h "}, {"pair": "EUR_USD", "timeframe": "1h"}]


@pytest.mark.parametrize("alias", ALIASES, ids=["exact", "lower-no-slash", "underscore"])
def test_inside_the_domain_is_true_and_not_counted(client, candle_json, alias):
    before = out_of_domain(client, "v3.1")
    data = predict(client, {**alias, "data": candle_json(3200, 80), "version": "v3.1"})
    assert data["factors"]["in_domain"] is True
    assert out_of_domain(client, "v3.1") == before


@pytest.mark.parametrize("where", OUTSIDE, ids=["pair-and-timeframe", "timeframe", "pair"])
def test_outside_the_domain_is_served_false_and_counted(client, candle_json, where):
    before = out_of_domain(client, "v3.1")
    data = predict(client, {**where, "data": candle_json(3200, 80), "version": "v3.1"})
    assert data["model_version"] == "v3.1" and data["signal"] in ("long", "short", "hold")
    assert data["factors"]["in_domain"] is False
    assert out_of_domain(client, "v3.1") == before + 1


def test_a_version_without_a_domain_says_null_and_is_not_counted(client, candle_json):
    before = out_of_domain(client, "v2.9")
    data = predict(client, {**OUTSIDE[0], "data": candle_json(3200, 80), "version": "v2.9"})
    assert "in_domain" in data["factors"] and data["factors"]["in_domain"] is None
    assert out_of_domain(client, "v2.9") == before


def test_batch_compare_and_legacy_say_it_too(client, candle_json):
    rows = candle_json(3200, 80)
    before = out_of_domain(client, "v3.0")
    items = [{**INSIDE, "data": rows, "version": "v3.0"}, {**OUTSIDE[0], "data": rows, "version": "v3.0"}]
    results = client.post("/reversal/predict/batch", json={"items": items}).json()["data"]["results"]
    assert [r["data"]["factors"]["in_domain"] for r in results] == [True, False]
    assert out_of_domain(client, "v3.0") == before + 1
    body = {**OUTSIDE[0], "data": rows, "versions": ["v3.0", "v2.9"]}
    compared = client.post("/reversal/compare", json=body).json()["data"]["predictions"]
    assert {v: p["in_domain"] for v, p in compared.items()} == {"v3.0": False, "v2.9": None}
    assert out_of_domain(client, "v3.0") == before + 1  # a comparison serves no prediction (issue 25)
    legacy = client.post("/predict", json={**INSIDE, "data": rows, "version": "v3.0"}).json()["data"]
    assert legacy["factors"]["in_domain"] is True


def test_model_routes_show_the_domain(client):
    assert client.get("/reversal/models/v3.1").json()["data"]["domain"] == DOMAIN
    assert client.get("/reversal/models/v2.9").json()["data"]["domain"] is None
    listed = {m["version"]: m["domain"] for m in client.get("/reversal/models").json()["data"]["versions"]}
    assert listed["v3.0"] == DOMAIN and listed["v2.9"] is None
    native = client.post(ROUTES["describe_model"], json={"version": "v3.1"})
    assert native.status_code == 200 and native.json()["domain"] == DOMAIN


def test_every_configured_version_has_a_counter_from_the_start(client):
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(client.get("/metrics").text)
    family = next(f for f in families if f.name == "aifx_out_of_domain")
    assert {"v3.1", "v3.0", "v2.9"} <= {s.labels["version"] for s in family.samples}
