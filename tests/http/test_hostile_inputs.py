"""Hostile inputs that used to reach the database or the models (issue 11, findings 7 and 4), in-process.

The table of simple bad bodies is tests/http/test_routes.py `BAD`; here: model outputs that are not
probabilities (one bad window in a shared stage call fails only its own request), database data
errors, batch items, and the unusual-but-plausible inputs that must stay served.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import DataError

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
MARK = 0.123456789  # the first feature value of a window whose stage output the fake stage spoils


def parts() -> Any:
    from aifx.http.bootstrap import app

    return app.state.parts


def feature_body(marked: bool = False, **extra: Any) -> dict:
    rows = [[0.01 * ((i + j) % 7) for j in range(12)] for i in range(20)]
    if marked:
        rows[0][0] = MARK
    return {**PAIR, "features": rows, **extra}


def _marked(window: Any) -> bool:
    return float(window[1][0, 0]) == MARK


class Spoiled:
    """A stage runner's call (every window of a request or batch, stacked per version) that spoils marked windows."""

    def __init__(self, real: Any, value: float, fired: float | None = None) -> None:
        self.real = real
        self.value = value
        self.fired = fired  # Stage 1: the probability of every other window (e.g. 0.99 so that Stage 2 runs)
        self.calls: list[int] = []

    def __call__(self, windows: list[Any]) -> list[float]:
        self.calls.append(len(windows))
        out = self.real(windows)
        if self.fired is not None:
            out = [self.fired] * len(out)
        return [self.value if _marked(w) else p for w, p in zip(windows, out, strict=True)]


@pytest.fixture
def spoil(client, monkeypatch) -> Iterator[Any]:
    """spoil(stage, value, fired=None): that stage's output for marked windows becomes value."""

    def apply(stage: int, value: float, fired: float | None = None) -> Spoiled:
        predictor = parts().predictor
        runner, name = (predictor.detector, "detect") if stage == 1 else (predictor.direction, "classify")
        fake = Spoiled(getattr(runner, name), value, fired)
        monkeypatch.setattr(runner, name, fake)
        return fake

    yield apply


def assert_finite_histograms(client) -> None:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name in ("aifx_stage1_probability", "aifx_confidence"):
            for sample in family.samples:
                assert math.isfinite(sample.value), sample


# ---- model outputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1.5, -0.25])
def test_a_stage1_output_that_is_not_a_probability_is_503_and_counts_nothing(client, spoil, value):
    spoil(1, value)
    r = client.post("/reversal/predict", json=feature_body(marked=True))
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert "Stage 1 of model version v3.1 returned" in error and "not a probability in [0, 1]" in error
    assert client.post("/reversal/predict", json=feature_body()).status_code == 200
    assert_finite_histograms(client)


def test_a_stage2_output_that_is_not_a_probability_is_503(client, spoil):
    spoil(1, 0.99, fired=0.99)  # every window fires, so Stage 2 runs
    spoil(2, float("nan"))
    r = client.post("/reversal/predict", json=feature_body(marked=True))
    assert r.status_code == 503 and "Stage 2 of model version v3.1 returned nan" in r.json()["error"], r.text
    r = client.post("/reversal/predict", json=feature_body())
    assert r.status_code == 200 and r.json()["data"]["signal"] in ("long", "short"), r.text
    assert_finite_histograms(client)


def test_one_bad_window_fails_only_its_batch_item(client, spoil):
    fake = spoil(1, float("nan"))
    items = [feature_body(), feature_body(marked=True), feature_body(version="v3.0"), feature_body()]
    items[2]["features"] = [row[:10] for row in items[2]["features"]]  # v3.0 takes 10 features
    r = client.post("/reversal/predict/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert [x["success"] for x in results] == [True, False, True, True]
    assert results[1]["error"].startswith("items[1]: Stage 1 of model version v3.1 returned nan")
    assert fake.calls == [4]  # the four windows went out in one stage call
    assert_finite_histograms(client)


# ---- user ids and the database ----------------------------------------------------------------------


@pytest.mark.parametrize("user", ["u\x00", "\x00", "a\nb", "a\x1bb", " "])
def test_a_user_id_with_control_characters_never_reaches_the_database(client, candle_json, experiment, user):
    """NUL gave 503 "database unavailable" on PostgreSQL (SQLite stored it); now 422 before any database call."""
    body = {**PAIR, "data": candle_json(3000, 80), "user_id": user}
    r = client.post("/reversal/predict", json=body)
    assert r.status_code == 422 and "user_id: must be 1-128 printable characters" in r.json()["error"], r.text
    r = client.post("/reversal/predict/batch", json={"items": [{**body, "user_id": "fine"}, body]})
    first, second = r.json()["data"]["results"]
    assert first["success"] is True and first["data"]["experiment_id"] == experiment["experiment_id"]
    assert second["success"] is False and second["error"].startswith("items[1]: user_id: must be 1-128 printable")


def test_a_database_data_error_is_422_not_503(client, candle_json, experiment, monkeypatch):
    """A value the database refuses as data is the request's fault: 422 with an error id, nothing recorded."""

    def refuse(items: list, *_args: Any) -> list:
        cause = ValueError("invalid byte sequence for encoding UTF8: 0x00")
        return [DataError("INSERT INTO predictions ...", {}, cause) for _ in items]  # each item, in its place

    monkeypatch.setattr(parts().ab.store, "record_predictions", refuse)
    body = {**PAIR, "data": candle_json(3000, 80), "user_id": "someone"}
    r = client.post("/reversal/predict", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert "rejected a value of this request as invalid data" in error and "error id" in error
    assert "0x00" not in error and "INSERT" not in error  # the driver's text stays in the log
    r = client.post("/reversal/predict/batch", json={"items": [body, {**body, "version": "v3.1"}]})
    results = r.json()["data"]["results"]
    assert results[0]["success"] is False and "rejected a value" in results[0]["error"]
    assert results[1]["success"] is True  # an explicit version is not counted: no database write


# ---- unusual but plausible inputs stay served -----------------------------------------------------


def _bar(rows: list[dict], i: int, factor: float) -> list[dict]:
    rows[i] = {**rows[i], "high": rows[i]["high"] * factor}
    return rows


@pytest.mark.parametrize(
    "name,change",
    [
        ("a spike 5x the median", lambda rows: _bar(rows, 70, 5.0)),
        ("a spike on the last bar", lambda rows: _bar(rows, 79, 9.9)),
        ("times in 2099", lambda rows: _shift_years(rows, 2099)),
        ("times in 1971", lambda rows: _shift_years(rows, 1971)),
        ("unix milliseconds", lambda rows: _unix(rows, 1000)),
    ],
)
def test_unusual_but_plausible_candles_are_served(client, candle_json, name, change):
    rows = change([dict(r) for r in candle_json(3000, 80)])
    r = client.post("/reversal/predict", json={**PAIR, "data": rows})
    assert r.status_code == 200, (name, r.text[:300])


def _shift_years(rows: list[dict], year: int) -> list[dict]:
    return [{**r, "timestamp": f"{year}{r['timestamp'][4:]}"} for r in rows]


def _unix(rows: list[dict], scale: int) -> list[dict]:
    from datetime import datetime

    return [{**r, "timestamp": int(datetime.fromisoformat(r["timestamp"]).timestamp()) * scale} for r in rows]


@pytest.mark.parametrize("value", [9_999.0, -10_000.0, 250.0, 1e-30])
def test_unusual_but_bounded_features_are_served(client, value):
    body = feature_body()
    body["features"][19][5] = value
    r = client.post("/reversal/predict", json=body)
    assert r.status_code == 200, r.text
    assert 0.0 <= r.json()["data"]["stage1_prob"] <= 1.0


@pytest.mark.parametrize("user", ["José Ñandú", "用户-42", "u" * 128, "a b", "🙂", "user@example.com"])
def test_printable_user_ids_are_served(client, candle_json, user):
    r = client.post("/reversal/predict", json={**PAIR, "data": candle_json(3000, 80), "userId": user})
    assert r.status_code == 200, r.text


def test_batch_items_are_typed_models_or_messages():
    """Issue 11, finding 4: an invalid item keeps only its message, never a dict of what was sent."""
    import json as jsonlib

    from aifx.serving.schemas import BatchRequest, InvalidItem, PredictRequest

    hostile = {"pair": "EUR/USD", "timeframe": "1h", "features": [[] for _ in range(5000)]}
    raw = jsonlib.dumps({"items": [feature_body(), hostile, {"pair": "x"}]})
    items = BatchRequest.model_validate_json(raw).items
    assert [type(i) for i in items] == [PredictRequest, InvalidItem, InvalidItem]
    assert items[1].message == "features: List should have at most 1000 items after validation, not 5000"
    assert vars(items[2]) == {"message": "timeframe: Field required"}
    assert not any(isinstance(i, dict) for i in items)
