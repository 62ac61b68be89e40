"""Issue 12 in-process: trade levels, the evaluation log with shadow scores, candles from trusted sources,
outcomes equal to an offline computation with the same function, live figures and experiments' market outcomes."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import select

from aifx import outcomes, trade
from aifx.settings import Settings
from experiments.schema import eval_bars, eval_decisions, market_candles

pytestmark = pytest.mark.http

TOKEN = "outcome-token-for-the-http-tests-0123456789"
RULE = trade.TradeRule()


def parts():
    from aifx.http.bootstrap import app

    return app.state.parts


_PAIRS = ["GBP/USD", "AUD/USD", "NZD/USD", "USD/CAD", "EUR/GBP", "EUR/CHF", "AUD/NZD", "GBP/CHF", "EUR/AUD"]


def pair() -> str:
    """A pair of its own for each test (the session database is shared): any known pair takes EUR/USD prices."""
    return _PAIRS.pop()


def bar_time(candles, i: int) -> datetime:
    return candles.timestamp[i].astype("datetime64[us]").astype(datetime).replace(tzinfo=UTC)


def stored(p: str) -> dict[datetime, dict]:
    """Bars of pair p: {bar_time: {"bar": row, "decisions": {version: row}}} after flushing the queue."""
    parts().outcomes.writer.flush()
    engine = parts().ab.store.engine
    with engine.connect() as conn:
        bars = conn.execute(select(eval_bars).where(eval_bars.c.pair == p)).all()
        out = {}
        for b in bars:
            rows = conn.execute(select(eval_decisions).where(eval_decisions.c.bar_id == b.id)).all()
            t = b.bar_time if b.bar_time.tzinfo else b.bar_time.replace(tzinfo=UTC)
            out[t] = {"bar": b, "decisions": {r.version: r for r in rows}}
    return out


def candle_count(p: str) -> int:
    parts().outcomes.writer.flush()
    with parts().ab.store.engine.connect() as conn:
        return len(conn.execute(select(market_candles.c.ts).where(market_candles.c.pair == p)).all())


def predict(client, p: str, candle_json, stop: int, **extra):
    r = client.post("/reversal/predict", json={"pair": p, "timeframe": "1h", "data": candle_json(stop, 64), **extra})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_a_long_or_short_carries_the_levels_it_is_scored_by(client, candles, candle_json):
    p = pair()
    data = predict(client, p, candle_json, 2_000, version="v2.9")  # threshold 0: always long or short
    c = candles.slice(2_000 - 64, 2_000)
    atr = outcomes.request_atr(c.high, c.low, c.close)
    entry = float(c.close[-1])
    sign = 1 if data["signal"] == "long" else -1
    expected = {"entry": entry, "take_profit": entry + sign * (2 * atr + 0.0001), "stop_loss": entry - sign * atr}
    assert data["trade"]["horizon_bars"] == 12
    assert all(abs(data["trade"][k] - v) <= 1e-12 for k, v in expected.items()), (data["trade"], expected)
    features = {"pair": p, "timeframe": "1h", "features": [[0.0] * 12] * 30, "version": "v2.9"}
    r = client.post("/reversal/predict", json=features)
    assert r.status_code == 200 and "trade" not in r.json()["data"]  # no candles: no entry, no ATR


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_trusted_predict_logs_every_loaded_version_once_per_bar(trusting, client, candles, candle_json):
    p = pair()
    body = {"pair": p, "timeframe": "1h", "data": candle_json(2_100, 64)}
    first = trusting.post("/reversal/predict", json=body, headers=AUTH).json()["data"]
    again = trusting.post("/reversal/predict", json=body, headers=AUTH).json()["data"]
    assert (first["signal"], first["stage1_prob"]) == (again["signal"], again["stage1_prob"])
    compared = client.post("/reversal/compare", json=body)
    bars = stored(p)
    (row,) = bars.values()
    assert bar_time(candles, 2_099) in bars
    decisions = row["decisions"]
    baselines = {v: d for v, d in decisions.items() if v in outcomes.BASELINES}
    assert {v: d.signal for v, d in baselines.items()} == outcomes.BASELINES  # the naive trades, on every bar
    decisions = {v: d for v, d in decisions.items() if v not in baselines}
    assert {v: d.served for v, d in decisions.items()} == {"v3.1": 2, "v3.0": 0, "v2.9": 0, "v3.2": 0}
    for version, d in decisions.items():  # shadow scores are what the version says on these candles
        assert d.signal == compared.json()["data"]["predictions"][version]["signal"]
        assert d.p_reversal == pytest.approx(compared.json()["data"]["predictions"][version]["stage1_prob"], abs=1e-7)
    assert row["bar"].entry == float(candles.close[2_099]) and row["bar"].state == "pending"


def test_anonymous_predicts_log_nothing_posted_candles_score_and_resolve_as_offline(client, candles, candle_json):
    p = pair()
    stops = list(range(2_200, 2_240))
    for stop in stops:
        predict(client, p, candle_json, stop)
    assert candle_count(p) == 0 and stored(p) == {}  # anonymous requests write nothing to the outcome loop
    first = stops[-1] + 12 - 120
    body = {"pair": p, "timeframe": "1h", "data": candle_json(stops[-1] + 12, 120)}
    r = client.post("/reversal/candles", json=body)
    assert r.status_code == 200 and r.json()["data"]["inserted"] == 120, r.text
    assert r.json()["data"]["bars_scored"] == 120 - 46  # from the 47th candle on (v3.0's min_candles)
    compared = {}
    for stop in stops:  # what every version says on the trusted window of each bar
        c = client.post("/reversal/compare", json={"pair": p, "timeframe": "1h", "data": candle_json(stop, 64)})
        compared[stop - 1] = c.json()["data"]["predictions"]
    parts().outcomes.resolve_due()
    bars = stored(p)
    assert len(bars) == 120 - 46
    mismatches = []
    for stop in stops:
        t = stop - 1
        bar = bars[bar_time(candles, t)]
        entry, atr, pip = bar["bar"].entry, bar["bar"].atr, bar["bar"].pip
        window = slice(max(first, t - 63), t + 1)  # the trusted candles up to the bar, at most 64
        assert bar["bar"].state == "resolved" and entry == float(candles.close[t])
        assert atr == outcomes.request_atr(candles.high[window], candles.low[window], candles.close[window])
        h, lo, c = candles.high[t + 1 : t + 13], candles.low[t + 1 : t + 13], candles.close[t + 1 : t + 13]
        for version, d in bar["decisions"].items():  # the baselines too: the same trade rule
            assert d.signal == outcomes.BASELINES.get(version, compared[t].get(version, {}).get("signal"))
            assert d.served == 0
            if d.signal == "hold":
                expected = (None, None)
            else:
                r1 = trade.resolve(d.signal, entry, atr, h, lo, c, pip, RULE)
                expected = (r1.result, r1.pips)
            if (
                d.result != expected[0]
                or (d.pips is None) != (expected[1] is None)
                or (d.pips is not None and abs(d.pips - expected[1]) > 1e-9)
            ):
                mismatches.append((t, version, d.result, d.pips, expected))
            sides = [trade.resolve(s, entry, atr, h, lo, c, pip, RULE).result for s in ("long", "short")]
            if version in ("v3.1", "v2.9") and d.label_held != ("hit" in sides):
                mismatches.append((t, version, "label", d.label_held))
    assert mismatches == []
    again = client.post("/reversal/candles", json=body).json()["data"]
    assert again == {"pair": p, "timeframe": "1h", "inserted": 0, "duplicates": 120, "conflicts": 0, "bars_scored": 0}


def test_live_block_matches_the_resolved_bars(client, candles, candle_json):
    p = pair()
    client.post("/reversal/candles", json={"pair": p, "timeframe": "1h", "data": candle_json(2_450, 100)})
    parts().outcomes.resolve_due()
    bars = stored(p)
    r = client.get("/reversal/models/v3.1", params={"pair": p, "timeframe": "1H"})
    assert r.status_code == 200, r.text
    live = r.json()["data"]["live"]
    mine = [b for b in bars.values() if "v3.1" in b["decisions"]]
    resolved = [b for b in mine if b["bar"].state == "resolved"]
    signals = [b["decisions"]["v3.1"] for b in resolved if b["decisions"]["v3.1"].signal != "hold"]
    assert live["resolved"] == len(resolved) == 100 - 52 - 12 and live["pending"] == 12
    assert live["signals"] == len(signals)
    if signals:
        assert live["hit_rate"] == pytest.approx(sum(d.result == "hit" for d in signals) / len(signals))
        assert live["mean_pips"] == pytest.approx(np.mean([d.pips for d in signals]))
    probs = [(b["decisions"]["v3.1"].p_reversal, b["decisions"]["v3.1"].label_held) for b in resolved]
    assert live["brier"] == pytest.approx(np.mean([(pr - float(lab)) ** 2 for pr, lab in probs]))
    assert live["filters"] == {"pair": p, "timeframe": "1h", "since": None}  # canonical spellings
    listed = client.get("/reversal/models", params={"pair": p}).json()["data"]["versions"]
    want = {v: sum(v in b["decisions"] and b["bar"].state == "resolved" for b in bars.values())
            for v in ("v3.1", "v3.0", "v2.9", "v3.2")}  # fmt: skip
    assert {m["version"]: m["live"]["resolved"] for m in listed} == want and want["v3.0"] == 100 - 46 - 12
    assert client.get("/reversal/models/v3.1", params={"pair": "XXX/YYY"}).json()["data"]["live"]["resolved"] == 0
    assert client.get("/reversal/models/v3.1", params={"pair": "not a pair"}).status_code == 422
    assert client.get("/reversal/models/v3.1", params={"since": "yesterday"}).status_code == 422


def test_candles_route_refuses_unknown_pairs_and_counts_conflicts(client, candle_json):
    p = pair()
    r = client.post("/reversal/candles", json={"pair": "ABC/XYZ", "timeframe": "1h", "data": candle_json(900, 5)})
    assert r.status_code == 422 and "ABC/XYZ" in r.json()["error"] and "AIFX_PIP_SIZES" in r.json()["error"]
    rows = candle_json(900, 5)
    assert client.post("/reversal/candles", json={"pair": p, "timeframe": "1h", "data": rows}).status_code == 200
    moved = [{**c, "close": c["close"] * 1.001, "high": c["high"] * 1.002} for c in rows[:2]]
    r = client.post("/reversal/candles", json={"pair": p, "timeframe": "1h", "data": moved})
    assert r.json()["data"] == {"pair": p, "timeframe": "1h", "inserted": 0, "duplicates": 0, "conflicts": 2,
                                "bars_scored": 0}  # fmt: skip
    r = client.post("/reversal/candles", json={"pair": p, "timeframe": "1h", "data": []})
    assert r.status_code == 422 and "data" in r.json()["error"]


def test_experiments_get_market_outcomes_by_themselves(client, candles, candle_json, experiment):
    p, eid = pair(), experiment["experiment_id"]
    served = [predict(client, p, candle_json, 2_600 + i, user_id=f"market-user-{i}") for i in range(20)]
    client.post("/reversal/candles", json={"pair": p, "timeframe": "1h", "data": candle_json(2_640, 200)})
    parts().outcomes.resolve_due()
    variants = client.get(f"/reversal/experiments/{eid}/metrics").json()["data"]["variants"]
    for v in ("A", "B"):
        trades = [s for s in served if s["variant"] == v and s["signal"] != "hold"]
        market = variants[v]["metrics"]["market_outcomes"]
        assert market["count"] == len(trades) and market["source"] == "market"
        assert variants[v]["metrics"]["outcomes"]["count"] == 0  # no client posted pips


@pytest.fixture
def trusting(client):
    """An app that knows the outcome token, over the session's parts."""
    from starlette.testclient import TestClient

    from aifx.http import app as app_module
    from aifx.http.bootstrap import app

    trusted_app = app_module.create_app(Settings(outcome_token=TOKEN, versions=("v3.1", "v3.0", "v2.9")))
    trusted_app.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(trusted_app) as c:
            yield c


def test_predictions_with_the_outcome_token_give_their_candles(trusting, candles, candle_json):
    p = pair()
    body = {"pair": p, "timeframe": "1h", "data": candle_json(2_800, 64)}
    assert trusting.post("/reversal/predict", json=body).status_code == 200
    assert candle_count(p) == 0
    wrong = trusting.post("/reversal/predict", json=body, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 200 and candle_count(p) == 0
    for stop in range(2_800, 2_814):  # a backend predicting bar by bar for its users, with the token
        body = {"pair": p, "timeframe": "1h", "data": candle_json(stop, 64)}
        assert (
            trusting.post("/reversal/predict", json=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code
            == 200
        )
    assert candle_count(p) == 64 + 13
    parts().outcomes.resolve_due()
    states = {t: b["bar"].state for t, b in stored(p).items()}
    assert states[bar_time(candles, 2_799)] == "resolved"  # 13 later candles arrived through predictions
    assert states[bar_time(candles, 2_812)] == "pending"


@pytest.mark.parametrize("timeframe", ["1 h", "h-1", "123456789", "é"])
def test_bad_timeframes_are_422_on_the_candles_route_and_the_live_filter(client, candle_json, timeframe):
    r = client.post("/reversal/candles", json={"pair": "EUR/USD", "timeframe": timeframe, "data": candle_json(900, 5)})
    assert r.status_code == 422 and "timeframe" in r.json()["error"], r.text
    r = client.get("/reversal/models/v3.1", params={"timeframe": timeframe})
    assert r.status_code == 422 and "timeframe" in r.json()["error"], r.text


def test_a_trusted_predict_about_an_unscorable_bar_is_served_and_stores_nothing(trusting, candle_json):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for pair, timeframe in (("zz", "1h"), ("EUR/USD", "1 h"), ("ABC/XYZ", "1h")):
        body = {"pair": pair, "timeframe": timeframe, "data": candle_json(3_000, 64)}
        r = trusting.post("/reversal/predict", json=body, headers=auth)
        assert r.status_code == 200 and "trade" not in r.json()["data"], r.text
    assert candle_count("ABC/XYZ") == 0 and stored("ABC/XYZ") == {}


def test_one_source_of_bad_candles_costs_no_other_row_of_its_batch(client, candles):
    from aifx.serving.log_rows import CandleRows
    from experiments import records

    p = pair()
    bad = CandleRows(p, "1 h", (records.Candle(bar_time(candles, 10), 1.1, 1.2, 1.0, 1.1),), "predict")
    good = records.BarLog(p, "1h", bar_time(candles, 20), 1.1, 0.001, 0.0001,
                          (records.Decision("v3.1", "long", 0.7, 0.8, 1),))  # fmt: skip
    parts().outcomes._write([bad, good])
    assert list(stored(p)) == [bar_time(candles, 20)]


def test_a_bar_that_cannot_resolve_is_set_aside_with_why_and_the_others_resolve(client, candles, candle_json):
    """One bad bar never stops the others; entry and ATR come from trusted candles, never from what was logged."""
    from experiments import records

    p = pair()
    gap, forged = bar_time(candles, 3_379), bar_time(candles, 3_389)
    rows = [r for r in candle_json(3_420, 120) if r["timestamp"] != gap.strftime("%Y-%m-%dT%H:%M:%SZ")]
    assert len(rows) == 119
    store = parts().outcomes.store
    logged = [  # rows as the code before issue 25 logged them from anonymous requests: the request's entry and ATR
        records.BarLog(p, "1h", t, 1_000.0, 5.0, 0.0001, (records.Decision("v3.1", "long", 0.9, 0.9, 1),))
        for t in (gap, forged)
    ]
    store.log(logged)
    r = client.post("/reversal/candles", json={"pair": p, "timeframe": "1h", "data": rows})
    assert r.status_code == 200, r.text
    parts().outcomes.resolve_due()
    bars = stored(p)
    assert bars[gap]["bar"].state == "expired" and "no trusted candle of the bar itself" in bars[gap]["bar"].note
    row = bars[forged]["bar"]
    window = [i for i in range(3_389 - 64, 3_390) if i != 3_379]  # the 64 trusted candles up to the bar
    assert row.state == "resolved" and row.entry == float(candles.close[3_389]) and row.note is None
    assert row.atr == outcomes.request_atr(candles.high[window], candles.low[window], candles.close[window])
    resolved = [b for t, b in bars.items() if t != gap and b["bar"].state == "resolved"]
    assert (
        len(resolved) == 119 - 46 - 12
    )  # every bar with v3.0's 47 candles behind it and 12 after (the forged one too)
    live = client.get("/reversal/models/v3.1", params={"pair": p}).json()["data"]["live"]
    assert live["void"] == 1 and live["expired"] == 1
