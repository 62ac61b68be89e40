"""Issue 25 against a real `bentoml serve` with both tokens, the resolver every 0.5 s and the promoter every
second under an `auto` policy: no sequence of requests without a token changes a live figure, the paired
comparison (its bars and numbers), a guardrail, the decision log, the promotion state or the active
version; no answer is a 500; no evaluation row is dropped; bars pre-logged for future times do not take
over the real ones, and resolution of real bars goes on afterwards.

The attacks are those the issue measured (forged wins, forged losses, stopped resolution, rows dropped
by a GET, subnormal prices) plus bars timed in 1970 and in the future, compare floods and junk pairs.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from experiments.schema import eval_bars, eval_decisions
from tests.integration.conftest import home_with_always_long, poll, start_server

pytestmark = pytest.mark.integration

TOKEN = "hostile-outcome-token-0123456789abcdefgh"
ADMIN = "hostile-admin-token-0123456789abcdefghij"
AUTH, ADMIN_AUTH = {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {ADMIN}"}
FIRST, TRUSTED, LATER = 5_000, 300, 40  # trusted candles of bars [FIRST - 63, FIRST + TRUSTED), then LATER more
METRICS = ("aifx_evaluation_rows_dropped_total", "aifx_evaluation_bars_logged_total", "aifx_outcomes_void_total")


@pytest.fixture(scope="module")
def server(model_store, tmp_path_factory):
    """v3.1 (active) and the always-long test version v9.1, with an `auto` policy for v9.1."""
    work = tmp_path_factory.mktemp("hostile")
    home = home_with_always_long(model_store, work)
    srv = start_server(
        model_store, work, BENTOML_HOME=str(home), AIFX_VERSIONS="v3.1,v9.1", AIFX_OUTCOME_TOKEN=TOKEN,
        AIFX_ADMIN_TOKEN=ADMIN, AIFX_RESOLVE_EVERY_SECONDS="0.5", AIFX_PROMOTION_EVERY_SECONDS="1",
        AIFX_RATE_LIMIT_PER_SECOND="100000", AIFX_RATE_LIMIT_BURST="100000",
    )  # fmt: skip
    yield srv
    srv.stop()


def scaled(rows: list[dict], factor: float, minute: int | None = None, year: str | None = None) -> list[dict]:
    """Candles with every price times factor, optionally moved to another minute or year."""
    out = []
    for r in rows:
        ts = r["timestamp"]
        if minute is not None:
            ts = f"{ts[:14]}{minute:02d}{ts[16:]}"
        if year is not None:
            ts = f"{year}{ts[4:]}"
        out.append({**r, "timestamp": ts, **{k: r[k] * factor for k in ("open", "high", "low", "close")}})
    return out


def trending(rows: list[dict], per_bar: float) -> list[dict]:
    """The same candles with a planted trend (what makes an always-long version look good)."""
    return [{**r, **{k: r[k] + i * per_bar for k in ("open", "high", "low", "close")}} for i, r in enumerate(rows)]


def logged_decision(db: Path, timestamp: str) -> tuple[str, float]:
    """v3.1's logged (signal, p_reversal) on the EUR/USD 1h bar at this time, read from the database file."""
    stamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            b, d = eval_bars.c, eval_decisions.c
            rows = conn.execute(
                select(d.signal, d.p_reversal, b.bar_time)
                .join(eval_bars, b.id == d.bar_id)
                .where(b.pair == "EUR/USD", b.timeframe == "1h", d.version == "v3.1")
            ).all()
    finally:
        engine.dispose()
    (found,) = [r for r in rows if r.bar_time.replace(tzinfo=UTC) == stamp]
    return found.signal, found.p_reversal


def metric_sum(text: str, name: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name))


def snapshot(client: httpx.Client) -> dict:
    """Everything the scoreboard decides by, as the API shows it."""
    models = client.get("/reversal/models").json()["data"]
    evaluation = client.get("/reversal/evaluation", params={"a": "v3.1", "b": "v9.1"}).json()["data"]
    text = client.get("/metrics").text
    return {
        "active": models["active_version"],
        "live": {m["version"]: m["live"] for m in models["versions"]},
        "evaluation": evaluation,
        "decisions": client.get("/reversal/decisions", headers=ADMIN_AUTH).json()["data"],
        "promotion": client.get("/reversal/promotion", headers=ADMIN_AUTH).json()["data"],
        "metrics": {name: metric_sum(text, name) for name in METRICS},
    }


def attack(client: httpx.Client, candle_json) -> list[int]:
    """Every request the issue tried, without a token; the statuses."""
    statuses: list[int] = []

    def post(path: str, body: dict) -> None:
        statuses.append(client.post(path, json=body).status_code)

    def predict(rows: list[dict], pair: str = "EUR/USD", timeframe: str = "1h") -> dict:
        return {"pair": pair, "timeframe": timeframe, "data": rows}

    # forged wins: 600 batch items, real candles at hh:30 with every price halved, and on-grid trending windows
    for k in range(6):
        items = [predict(scaled(candle_json(FIRST + 10 + 100 * k + i % 100, 64), 0.5, minute=30)) for i in range(100)]
        post("/reversal/predict/batch", {"items": items})
    for stop in range(FIRST + 60, FIRST + 90):
        post("/reversal/predict", predict(trending(candle_json(stop, 64), 3e-4)))
    # bars pre-logged for the next bars, which trusted candles will close later
    for stop in range(FIRST + TRUSTED + 1, FIRST + TRUSTED + LATER):
        post("/reversal/predict", predict(trending(candle_json(stop, 64), 5e-4)))
    # forged losses, stopped resolution, subnormal and huge prices
    for factor, minute in ((1e-6, None), (1_000.0, 30), (1e-310, None), (1e-300, None), (1e300, None)):
        post("/reversal/predict", predict(scaled(candle_json(FIRST + 150, 64), factor, minute=minute)))
    # bars timed in 1970 and in 2099, junk pairs and timeframes, compare floods
    post("/reversal/predict", predict(scaled(candle_json(FIRST + 200, 64), 1.0, year="1970")))
    post("/reversal/predict", predict(scaled(candle_json(FIRST + 200, 64), 1.0, year="2099")))
    for i in range(200):
        post("/reversal/predict", predict(candle_json(FIRST + 100 + i, 64), pair=f"J{i:03d}/JPY", timeframe="1H"))
        post("/reversal/compare", predict(candle_json(FIRST + 100 + i, 64), timeframe=("1h", "H1", "60m")[i % 3]))
    # what needs a token
    statuses.append(client.post("/reversal/candles", json=predict(candle_json(FIRST + TRUSTED + 5, 5))).status_code)
    statuses.append(client.put("/reversal/promotion/v9.1", json={"mode": "off"}).status_code)
    statuses.append(client.post("/reversal/models/v9.1/switch").status_code)
    # reads that used to answer 500 and rest the background jobs
    since = {"since": "0001-01-01T00:00:00+01:00"}
    for _ in range(20):
        for path, params in (("/reversal/models", {}), ("/reversal/evaluation", {"a": "v3.1", "b": "v9.1"})):
            statuses.append(client.get(path, params={**params, **since}).status_code)
        # an admin read, with its token: still a 422 that rests no background job
        statuses.append(client.get("/reversal/decisions", params=since, headers=ADMIN_AUTH).status_code)
    return statuses


def test_no_anonymous_request_steers_the_scoreboard(server, candle_json):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        policy = {"mode": "auto", "min_effect_r": 0.05, "max_drawdown_r": 100.0, "probation_bars": 5_000}
        assert client.put("/reversal/promotion/v9.1", json=policy, headers=ADMIN_AUTH).status_code == 200
        body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(FIRST + TRUSTED, TRUSTED + 63)}
        r = client.post("/reversal/candles", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        scored = r.json()["data"]["bars_scored"]
        assert scored == TRUSTED + 63 - 52  # every bar with the 53 candles v3.1 and v9.1 need behind it
        want = TRUSTED - 12  # the bars with 12 trusted candles after them, from bar FIRST on
        assert poll(lambda: client.get("/reversal/models").json()["data"]["versions"][0]["live"]["resolved"] >= want)
        time.sleep(3)  # several resolver and promoter passes on the trusted bars alone
        before = snapshot(client)
        assert before["evaluation"]["n_bars"] > 0 and before["active"] == "v3.1"

        statuses = attack(client, candle_json)
        assert statuses.count(401) == 3 and 500 not in statuses and max(statuses) < 500, sorted(set(statuses))
        assert statuses.count(422) >= 60  # the out-of-range `since` reads, at least

        time.sleep(4)
        after = snapshot(client)
        for key in before:
            assert after[key] == before[key], key

        # the real next bars: trusted candles close them; what counts is their trusted window, not the forgery
        body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(FIRST + TRUSTED + LATER, LATER)}
        r = client.post("/reversal/candles", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json()["data"]["bars_scored"] == LATER, r.text
        target = before["live"]["v9.1"]["resolved"] + LATER
        assert poll(lambda: client.get("/reversal/models/v9.1").json()["data"]["live"]["resolved"] >= target)
        evaluation = client.get("/reversal/evaluation", params={"a": "v3.1", "b": "v9.1"}).json()["data"]
        assert evaluation["n_bars"] == before["evaluation"]["n_bars"] + LATER
        assert all(math.isfinite(v) for v in (evaluation["mean_diff"], evaluation["nw_se"]) if v is not None)
        for stop in range(FIRST + TRUSTED + 1, FIRST + TRUSTED + LATER, 7):  # each pre-forged bar: its trusted window
            body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(stop, 64)}
            honest = client.post("/reversal/compare", json=body).json()["data"]["predictions"]["v3.1"]
            signal, p_reversal = logged_decision(server.log.parent / "state.db", body["data"][-1]["timestamp"])
            assert signal == honest["signal"] and abs(p_reversal - honest["stage1_prob"]) < 1e-6
        text = client.get("/metrics").text
        assert metric_sum(text, "aifx_evaluation_rows_dropped_total") == before["metrics"][METRICS[0]]
