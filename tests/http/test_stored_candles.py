"""Issue 30, items 1 and 2 in-process: a predict without `data` answers from the trusted candles posted to
/reversal/candles, exactly as a predict with those candles does; the seed's 20+ candles are topped up from
the stored history when they line up with it; what cannot be answered is a 422 that says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.http

PAIR, FRESH = "USD/SEK", "USD/DKK"  # pairs of their own: the session database is shared
SAME = ("signal", "confidence", "stage1_prob", "stage2_prob", "model_version", "trade")


def post_candles(client, pair: str, rows: list[dict]) -> None:
    r = client.post("/reversal/candles", json={"pair": pair, "timeframe": "1h", "data": rows})
    assert r.status_code == 200, r.text


def predict(client, **body) -> dict:
    r = client.post("/reversal/predict", json={"timeframe": "1h", "version": "v3.1", **body})
    assert r.status_code == 200, r.text
    return r.json()["data"]


@pytest.fixture(scope="module")
def stored(client, candle_json):
    post_candles(client, PAIR, candle_json(4_200, 200))
    return PAIR


def test_a_predict_without_data_equals_one_with_the_same_stored_candles(client, candle_json, stored):
    rows = candle_json(4_151, 64)
    sent = predict(client, pair=stored, data=rows)
    from_store = predict(client, pair=stored, bar_time=rows[-1]["timestamp"])
    assert {k: from_store.get(k) for k in SAME} == {k: sent.get(k) for k in SAME}
    batch = client.post("/reversal/predict/batch", json={"items": [
        {"pair": stored, "timeframe": "1h", "version": "v3.1", "bar_time": rows[-1]["timestamp"]}]}).json()  # fmt: skip
    assert {k: batch["data"]["results"][0]["data"].get(k) for k in SAME} == {k: sent.get(k) for k in SAME}
    compared = client.post("/reversal/compare", json={"pair": stored, "timeframe": "1h",
                                                      "bar_time": rows[-1]["timestamp"]})  # fmt: skip
    assert compared.status_code == 200
    assert compared.json()["data"]["predictions"]["v3.1"]["stage1_prob"] == sent["stage1_prob"]


def test_the_seeds_20_candles_are_topped_up_from_stored_history(client, candle_json, stored):
    full = predict(client, pair=stored, data=candle_json(4_171, 64))
    short = predict(client, pair=stored, data=candle_json(4_171, 20))
    assert {k: short.get(k) for k in SAME} == {k: full.get(k) for k in SAME}
    moved = [{**c, "close": c["close"] * 1.01, "high": c["high"] * 1.01} for c in candle_json(4_171, 20)]
    r = client.post("/reversal/predict", json={"pair": stored, "timeframe": "1h", "version": "v3.1", "data": moved})
    assert r.status_code == 422 and "need at least 53" in r.json()["error"] and "/reversal/candles" in r.json()["error"]
    other = client.post(
        "/reversal/predict", json={"pair": "NZD/CHF", "timeframe": "1h", "data": candle_json(4_171, 20)}
    )
    assert other.status_code == 422 and "need at least" in other.json()["error"]  # nothing stored for that pair


def test_the_latest_closed_bar_is_answered_when_the_store_is_fresh(client, candle_json):
    latest = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    rows = candle_json(4_300, 80)
    for i, row in enumerate(rows):  # the same prices, stamped to end at the latest closed hour
        row["timestamp"] = (latest - timedelta(hours=len(rows) - 1 - i)).strftime("%Y-%m-%dT%H:%M:%SZ")
    post_candles(client, FRESH, rows)
    sent = predict(client, pair=FRESH, data=rows[-64:])
    from_store = predict(client, pair=FRESH)
    assert {k: from_store.get(k) for k in SAME} == {k: sent.get(k) for k in SAME}


@pytest.mark.parametrize(
    "body, words",
    [
        ({"pair": PAIR}, "more than one bar before the latest closed bar"),  # stale: posted bars end last week
        ({"pair": "NZD/CAD"}, "none stored"),
        ({"pair": "ABC/XYZ"}, "instrument table"),
        ({"pair": PAIR, "timeframe": "1 h"}, "timeframe"),
        ({"pair": PAIR, "bar_time": "2001-01-01T00:00:00Z"}, "no stored candle"),
        ({"pair": PAIR, "bar_time": "1900-01-01T00:00:00Z"}, "bar_time"),
        ({"pair": PAIR, "data": []}, "empty"),
    ],
)
def test_what_the_store_cannot_answer_is_a_422_that_says_why(client, stored, body, words):
    r = client.post("/reversal/predict", json={"timeframe": "1h", **body})
    assert r.status_code == 422 and words in r.json()["error"], r.text


def test_bar_time_goes_with_stored_candles_only(client, candle_json, stored):
    rows = candle_json(4_151, 64)
    r = client.post("/reversal/predict", json={"pair": stored, "timeframe": "1h", "data": rows,
                                               "bar_time": rows[-1]["timestamp"]})  # fmt: skip
    assert r.status_code == 422 and "bar_time" in r.json()["error"]
