"""Issue 30, item 3 in-process: one signal event per bar that trusted candles close, streamed as Server-Sent
Events, replayed after Last-Event-ID from the database, the latest per series; bounded subscriptions."""

from __future__ import annotations

import asyncio
import json

import pytest

pytestmark = pytest.mark.http

PAIR, LIVE = "EUR/NOK", "EUR/SEK"  # pairs of their own: the session database is shared


def parts():
    from aifx.http.bootstrap import app

    return app.state.parts


def read_events(pair: str, n: int, last_event_id: int | None, life_s: float = 3.0) -> list[dict]:
    """The first n events of a stream: the route's own generator over a hub of this test's (Starlette's
    TestClient waits for a response to end, which a stream never does; tests/integration reads real ones)."""
    from aifx.http.signal_routes import _events
    from aifx.serving.signal_hub import SignalHub

    async def collect() -> list[dict]:
        hub = SignalHub(parts().signals.store, max_total=8, max_per_client=8, poll_s=0.1)
        sub = hub.subscribe(pair, "1h", "test")
        events: list[dict] = []
        async for chunk in _events(hub, sub, last_event_id, life_s):
            if chunk.startswith("id: "):
                head, data = chunk.split("\ndata: ", 1)
                events.append({"id": int(head.split("\n")[0][4:]), "data": json.loads(data)})
                if len(events) >= n:
                    break
        return events

    return asyncio.run(collect())


def post(client, pair: str, rows: list[dict]) -> dict:
    r = client.post("/reversal/candles", json={"pair": pair, "timeframe": "1h", "data": rows})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_every_closed_bar_makes_one_event_replayed_after_last_event_id(client, candle_json):
    done = post(client, PAIR, candle_json(4_600, 80))
    assert done["bars_scored"] == 80 - 46
    events = read_events(PAIR, 80 - 46, last_event_id=0)
    assert len(events) == 80 - 46 and [e["id"] for e in events] == sorted(e["id"] for e in events)
    times = [e["data"]["bar_time"] for e in events]
    assert len(set(times)) == len(times) and times == sorted(times)
    first = events[-1]["data"]
    assert first["pair"] == PAIR and first["timeframe"] == "1h" and first["active_version"] == "v3.1"
    assert set(first["versions"]) == {"v3.1", "v3.0", "v2.9", "v3.2"}
    answer = first["signal"]
    assert answer["model_version"] == "v3.1" and ("trade" in answer) == (answer["signal"] != "hold")
    body = {"pair": PAIR, "timeframe": "1h", "version": "v3.1", "bar_time": first["bar_time"]}
    same = client.post("/reversal/predict", json=body).json()["data"]
    assert (same["signal"], same["stage1_prob"], same.get("trade")) == (
        answer["signal"], answer["stage1_prob"], answer.get("trade"))  # fmt: skip
    rest = read_events(PAIR, 3, last_event_id=events[-4]["id"])
    assert [e["id"] for e in rest] == [e["id"] for e in events[-3:]]
    latest = client.get("/reversal/signals/latest", params={"pair": "eurnok", "timeframe": "H1"}).json()["data"]
    assert latest["id"] == events[-1]["id"]
    assert post(client, PAIR, candle_json(4_600, 80))["bars_scored"] == 0  # nothing new: no second event
    assert read_events(PAIR, 1, last_event_id=0)[0]["id"] == events[0]["id"]


def test_a_subscriber_receives_the_bars_as_they_are_posted(client, candle_json):
    from aifx.serving.signal_hub import SignalHub

    post(client, LIVE, candle_json(4_700, 60))
    hub = SignalHub(parts().signals.store, max_total=8, max_per_client=8, poll_s=0.1)
    sub = hub.subscribe(LIVE, "1h", "test")
    asyncio.run(hub._step())  # the hub starts from the newest event: nothing old is delivered
    assert sub.queue.qsize() == 0
    for stop in range(4_701, 4_706):  # a backend posting each closed candle once
        assert post(client, LIVE, candle_json(stop, 1))["bars_scored"] == 1
    asyncio.run(hub._step())
    got = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert [e["bar_time"][:13] for e in got] == [r["timestamp"][:13] for r in candle_json(4_705, 5)]


@pytest.mark.parametrize(
    "params, status", [({"pair": "ABC/XYZ", "timeframe": "1h"}, 422), ({"pair": PAIR, "timeframe": "1 h"}, 422),
                       ({"pair": PAIR}, 422), ({"pair": "x" * 33, "timeframe": "1h"}, 422)],
)  # fmt: skip
def test_what_no_event_can_be_about_is_a_422(client, params, status):
    for route in ("/reversal/signals/stream", "/reversal/signals/latest"):
        r = client.get(route, params=params)
        assert r.status_code == status, r.text


def test_subscriptions_are_bounded_per_client():
    from aifx.serving.signal_hub import SignalHub, TooManySubscriptions

    hub = SignalHub(parts().signals.store, max_total=5, max_per_client=2, poll_s=1.0)
    subs = [hub.subscribe(PAIR, "1h", "a"), hub.subscribe(PAIR, "1h", "a")]
    with pytest.raises(TooManySubscriptions, match="per client"):
        hub.subscribe(PAIR, "1h", "a")
    subs += [hub.subscribe(PAIR, "1h", c) for c in ("b", "b", "c")]
    with pytest.raises(TooManySubscriptions, match="this worker"):
        hub.subscribe(PAIR, "1h", "d")
    hub.unsubscribe(subs[0])
    assert len(hub) == 4 and hub.subscribe(PAIR, "1h", "a").client == "a"


def test_a_subscriber_that_stops_reading_is_closed_at_a_bounded_cost():
    from aifx.serving.signal_hub import QUEUE, SignalHub

    hub = SignalHub(parts().signals.store, max_total=5, max_per_client=2, poll_s=1.0)
    sub = hub.subscribe(PAIR, "1h", "slow")
    hub.deliver([{"id": i, "pair": PAIR, "timeframe": "1h"} for i in range(QUEUE + 50)])
    assert sub.closed and sub.queue.qsize() <= QUEUE + 1
