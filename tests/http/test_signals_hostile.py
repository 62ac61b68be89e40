"""Hostile input for the signal routes in-process: names no event can be about, ids that are no ids, thousands
of subscriptions, and readers that stop reading (tests/integration/test_signals_hostile_served.py: served)."""

from __future__ import annotations

import asyncio

import pytest

from aifx import metrics

pytestmark = pytest.mark.http

PAIR = "EUR/DKK"  # not in the instrument table: no candle is ever stored for it
ROUTES = ("/reversal/signals/stream", "/reversal/signals/latest")


def parts():
    from aifx.http.bootstrap import app

    return app.state.parts


@pytest.mark.parametrize(
    "pair", ["EUR/DKK", "EUR/USD\x00", "ЕUR/USD", "EUR/USD/JPY", " ", "../../etc", "EUR%2FUSD", "x" * 32]
)
def test_a_pair_no_event_can_be_about_is_a_422(client, pair):
    for route in ROUTES:
        r = client.get(route, params={"pair": pair, "timeframe": "1h"})
        assert r.status_code == 422 and r.json()["success"] is False, (route, pair, r.text)


@pytest.mark.parametrize("timeframe", ["0m", "10081m", "2w", "-1h", "1.5h", "h", "1h; drop table", "1 h", "H0"])
def test_a_timeframe_that_is_none_is_a_422(client, timeframe):
    for route in ROUTES:
        r = client.get(route, params={"pair": "EUR/USD", "timeframe": timeframe})
        assert r.status_code == 422, (route, timeframe, r.text)


@pytest.mark.parametrize("last", ["-1", "abc", "1e3", str(2**63), "1.5", "", "0x10"])
def test_a_last_event_id_that_is_no_id_is_a_422(client, last):
    r = client.get(ROUTES[0], params={"pair": "EUR/USD", "timeframe": "1h"}, headers={"Last-Event-ID": last})
    assert r.status_code == 422 and "Last-Event-ID" in r.text, (last, r.text)


def test_thousands_of_subscriptions_are_refused_beyond_the_bounds(client):
    from aifx.serving.signal_hub import SignalHub, TooManySubscriptions

    hub = SignalHub(parts().signals.store, max_total=64, max_per_client=4, poll_s=1.0)
    taken = refused = 0
    for i in range(5_000):  # 5,000 attempts from 2,500 clients
        try:
            hub.subscribe("EUR/USD", f"{1 + i % 10_080}m", f"addr:10.0.{i % 2_500 // 250}.{i % 250}")
            taken += 1
        except TooManySubscriptions:
            refused += 1
    assert (taken, refused, len(hub)) == (64, 4_936, 64)
    # Thousands of distinct timeframes make no more series than the metric timeframes and "other".
    series = {labels for labels in metrics.SIGNAL_SUBSCRIBERS._metrics if labels[0] == "EUR/USD"}
    assert series <= {("EUR/USD", tf) for tf in (*metrics.instruments.METRIC_TIMEFRAMES, "other")}


def test_a_stream_whose_client_takes_no_bytes_is_closed_and_unsubscribed(client):
    from aifx.http.signal_routes import EventStream, _events
    from aifx.serving.signal_hub import SignalHub

    async def run() -> tuple[int, bool, float]:
        hub = SignalHub(parts().signals.store, max_total=8, max_per_client=8, poll_s=1.0)
        sub = hub.subscribe("EUR/USD", "1h", "never-reads")
        response = EventStream(_events(hub, sub, None, 3600.0), 0.2, media_type="text/event-stream")
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)
            if len(sent) >= 2:  # the head and the first bytes went out; then the socket is full
                await asyncio.Event().wait()

        async def receive() -> dict:
            await asyncio.Event().wait()  # the client never disconnects either
            return {}

        start = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            await response({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)
        return len(hub), response.cut, asyncio.get_running_loop().time() - start

    subscribed, cut, seconds = asyncio.run(run())
    assert subscribed == 0 and cut and 0.2 <= seconds < 2


def test_a_reader_that_falls_behind_gets_a_replay_hint_and_the_end(client):
    from aifx.http.signal_routes import _events
    from aifx.serving.signal_hub import QUEUE, SignalHub

    async def run() -> list[str]:
        hub = SignalHub(parts().signals.store, max_total=8, max_per_client=8, poll_s=1.0)
        sub = hub.subscribe("EUR/USD", "1h", "slow")
        stream = _events(hub, sub, None, 3600.0)
        chunks = [await anext(stream)]  # retry: the stream is open, then the reader stops
        fake = {"pair": "EUR/USD", "timeframe": "1h", "bar_time": "2026-01-05T00:00:00+00:00", "payload": {}}
        hub.deliver([{**fake, "id": 10**9 + i} for i in range(QUEUE + 10)])
        chunks += [c async for c in stream]
        return chunks

    chunks = asyncio.run(run())
    frames = [c for c in chunks if c.startswith("id: ")]
    assert len(frames) == 256 and chunks[-1].startswith(": closed: this reader fell 256 events behind")
