"""Request limits, each a clear 4xx: body size, candles, batch items, id lengths; timeouts configured."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aifx.serving.schemas import MAX_BATCH_ITEMS, MAX_CANDLES
from aifx.settings import Settings
from experiments.schema import ID_LEN

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
JSON = {"content-type": "application/json"}
BODY_LIMIT = Settings().max_body_bytes  # the batch route's
PREDICT_LIMIT = Settings().max_predict_body_bytes  # predict, compare, legacy
OTHER_LIMIT = Settings().max_other_body_bytes  # experiments, outcomes, admin
START = datetime(2017, 1, 2, tzinfo=UTC)


def synthetic_candles(n: int) -> list[dict]:
    """n valid hourly candles (a gentle sine wave), oldest first."""
    base = 1_500_000_000
    rows = []
    for i in range(n):
        mid = 1.1 + 0.01 * ((i % 48) - 24) / 24
        rows.append({"timestamp": base + 3600 * i, "open": mid, "high": mid + 0.002, "low": mid - 0.002, "close": mid})
    return rows


def assert_rejected(response, status: int, *parts: str) -> None:
    """An error envelope with this status whose message contains every part."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert body["success"] is False and body["data"] is None
    for part in parts:
        assert part in body["error"], body["error"]


@pytest.fixture
def body(candle_json) -> dict:
    return {**PAIR, "data": candle_json(3400, 80)}


# ---- body size ---------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_by_content_length(client):
    raw = b'{"pair": "' + b"x" * PREDICT_LIMIT + b'"}'
    assert_rejected(client.post("/reversal/predict", content=raw, headers=JSON), 413, f"{PREDICT_LIMIT:,} bytes")


def test_streamed_body_over_the_limit_is_413(client):
    """Chunked upload without Content-Length: cut off once the limit is passed."""

    def chunks() -> Iterator[bytes]:
        yield b'{"items": ["'
        for _ in range(BODY_LIMIT // 50_000 + 2):
            yield b"y" * 50_000
        yield b'"]}'

    assert_rejected(client.post("/reversal/predict/batch", content=chunks(), headers=JSON), 413, "larger than")


def test_body_under_the_limit_is_judged_on_its_content(client):
    raw = b'{"pair": "' + b"x" * (PREDICT_LIMIT - 100) + b'"}'
    assert_rejected(client.post("/reversal/predict", content=raw, headers=JSON), 422, "pair")


@pytest.mark.parametrize("path", ["/reversal/predict", "/reversal/compare", "/predict"])
def test_single_prediction_routes_take_a_quarter_of_the_batch_limit(client, path):
    """Issue 11, finding 4: only the batch route takes bodies up to AIFX_MAX_BODY_BYTES."""
    assert PREDICT_LIMIT == 262_144 < BODY_LIMIT
    raw = b'{"pair": "' + b"x" * (PREDICT_LIMIT + 1) + b'"}'
    assert_rejected(client.post(path, content=raw, headers=JSON), 413, f"{PREDICT_LIMIT:,} bytes", "1,000 candles")


def test_batch_route_keeps_the_large_limit(client):
    raw = b'{"items": [{"pair": "' + b"x" * (PREDICT_LIMIT * 2) + b'"}]}'
    r = client.post("/reversal/predict/batch", content=raw, headers=JSON)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["data"]["results"][0]["error"].startswith("items[0]: pair: String should have at most 32")


@pytest.mark.parametrize(
    "path",
    [
        "/reversal/experiments",
        "/reversal/experiments/e1/activate",
        "/reversal/experiments/e1/stop",
        "/reversal/models/v3.1/switch",
        "/reversal/predictions/00000000-0000-0000-0000-000000000000/outcome",
    ],
)
def test_experiment_outcome_and_admin_routes_take_small_bodies(client, path):
    """Their bodies are read before the token check: 16 KiB is all a valid one needs (2,000-character description)."""
    assert OTHER_LIMIT == 16_384
    raw = b'{"name": "' + b"x" * OTHER_LIMIT + b'"}'
    assert_rejected(client.post(path, content=raw, headers=JSON), 413, f"{OTHER_LIMIT:,} bytes", "small JSON object")


def test_the_longest_valid_experiment_body_fits_its_limit():
    body = {"experiment_id": "e" * ID_LEN, "name": "\u00e9" * 200, "description": "\u00e9" * 2000}
    body |= {"variant_a": "v" * ID_LEN, "variant_b": "w" * ID_LEN, "traffic_split": 0.123456789}
    assert len(json.dumps(body, indent=2).encode()) < OTHER_LIMIT  # non-ASCII escaped: 6 bytes a character


def test_the_largest_candle_request_fits_the_predict_limit_even_pretty_printed(client):
    """MAX_CANDLES candles with 17-digit prices, volume and an offset in every timestamp, indented."""
    rows = [
        {
            "timestamp": (START + timedelta(hours=i)).isoformat(timespec="microseconds"),
            "open": 1.0523400000000001,
            "high": 1.0623400000000001,
            "low": 1.0423400000000001,
            "close": 1.0523400000000001,
            "volume": 123456789.12345679,
        }
        for i in range(MAX_CANDLES)
    ]
    raw = json.dumps({**PAIR, "data": rows, "user_id": "u" * 128}, indent=2).encode()
    assert len(raw) <= PREDICT_LIMIT
    r = client.post("/reversal/predict", content=raw, headers=JSON)
    assert r.status_code == 200, r.text[:300]


# ---- candles, rows, batch items ----------------------------------------------------------------


def test_the_largest_allowed_candle_request_is_served(client):
    r = client.post("/reversal/predict", json={**PAIR, "data": synthetic_candles(MAX_CANDLES)})
    assert r.status_code == 200, r.text[:300]


def test_one_candle_too_many_is_422(client):
    r = client.post("/reversal/predict", json={**PAIR, "data": synthetic_candles(MAX_CANDLES + 1)})
    assert_rejected(r, 422, "data", str(MAX_CANDLES))


def test_too_many_feature_rows_is_422(client):
    r = client.post("/reversal/predict", json={**PAIR, "features": [[0.0] * 12] * (MAX_CANDLES + 1)})
    assert_rejected(r, 422, "features", str(MAX_CANDLES))


def test_batch_at_the_item_limit_is_served(client, body):
    r = client.post("/reversal/predict/batch", json={"items": [body] * MAX_BATCH_ITEMS})
    assert r.status_code == 200, r.text[:300]
    results = r.json()["data"]["results"]
    assert len(results) == MAX_BATCH_ITEMS and all(item["success"] for item in results)


def test_batch_over_the_item_limit_is_422(client, body):
    r = client.post("/reversal/predict/batch", json={"items": [body] * (MAX_BATCH_ITEMS + 1)})
    assert_rejected(r, 422, "items", str(MAX_BATCH_ITEMS))


def test_compare_with_too_many_versions_is_422(client, body):
    assert_rejected(client.post("/reversal/compare", json={**body, "versions": ["v3.1"] * 17}), 422, "versions")


@pytest.mark.parametrize(
    "field,value",
    [("pair", "P" * 33), ("timeframe", "t" * 17), ("version", "v" * 65)],
)
def test_long_request_strings_are_422(client, body, field, value):
    assert_rejected(client.post("/reversal/predict", json={**body, field: value}), 422, field)


# ---- user ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["user_id", "userId"])
def test_user_id_over_128_characters_is_422(client, body, key):
    assert_rejected(client.post("/reversal/predict", json={**body, key: "u" * 129}), 422, key, "128")
    assert client.post("/reversal/predict", json={**body, key: "u" * 128}).status_code == 200


def test_long_user_id_fails_only_its_batch_item(client, body):
    r = client.post("/reversal/predict/batch", json={"items": [body, {**body, "user_id": "u" * 129}]})
    first, second = r.json()["data"]["results"]
    assert r.status_code == 200 and first["success"] is True
    assert second["success"] is False and "items[1]: user_id" in second["error"]


# ---- experiment and prediction ids -------------------------------------------------------------


def experiment(eid: str, **extra: object) -> dict:
    return {"experiment_id": eid, "name": "limits", "variant_a": "v3.0", "variant_b": "v3.1", **extra}


def test_experiment_id_longer_than_the_limit_is_422(client):
    too_long = "e" * (ID_LEN + 1)
    r = client.post("/reversal/experiments", json=experiment(too_long))
    assert_rejected(r, 422, "experiment_id", f"1-{ID_LEN}")
    assert len(r.json()["error"]) < 300  # the id is not echoed whole


def test_experiment_id_at_the_limit_is_accepted(client):
    eid = uuid.uuid4().hex + "x" * (ID_LEN - 32)
    assert client.post("/reversal/experiments", json=experiment(eid)).status_code == 201


@pytest.mark.parametrize("route", ["activate", "stop", "metrics"])
def test_experiment_id_in_the_path_longer_than_the_limit_is_422(client, route):
    path = f"/reversal/experiments/{'e' * 5000}/{route}"
    r = client.get(path) if route == "metrics" else client.post(path)
    assert_rejected(r, 422, "experiment_id", f"at most {ID_LEN} characters")
    assert len(r.json()["error"]) < 300


def test_prediction_id_in_the_path_longer_than_a_uuid_is_422(client):
    r = client.post(f"/reversal/predictions/{'p' * 5000}/outcome", json={"pips": 1.0})
    assert_rejected(r, 422, "prediction_id", "at most 36 characters")


def test_version_in_the_path_longer_than_the_limit_is_422(client):
    assert_rejected(client.get(f"/reversal/models/{'v' * 5000}"), 422, "version", f"at most {ID_LEN}")


@pytest.mark.parametrize("field,size,limit", [("name", 201, 200), ("description", 2001, 2000)])
def test_long_experiment_texts_are_422(client, field, size, limit):
    r = client.post("/reversal/experiments", json=experiment(uuid.uuid4().hex, **{field: "n" * size}))
    assert_rejected(r, 422, field, str(limit))


# ---- timeouts (the configuration itself: tests/unit/test_settings_timeouts.py) -------------------


def test_service_defaults_carry_a_traffic_timeout(client):
    """The decorator defaults (used without BENTOML_CONFIG) bound requests too."""
    from service import ReversalEngine

    assert 0 < ReversalEngine.config["traffic"]["timeout"] <= 60


def test_entry_concurrency_is_sized_to_memory():
    """Issue 11, finding 4: 1,024 was 512 concurrent 1 MB bodies per worker; bodies now have their own budget."""
    import yaml

    from service import ReversalEngine

    assert ReversalEngine.config["traffic"]["max_concurrency"] == 256
    config = yaml.safe_load((Path(__file__).parents[2] / "configuration.yaml").read_text())
    assert config["services"]["ReversalEngine"]["traffic"]["max_concurrency"] == 256
    assert Settings().body_budget_bytes == 2 * BODY_LIMIT  # two full batch bodies per worker at once
