"""The clients' signals(): Server-Sent Events parsed as the standard says, and reconnects with Last-Event-ID
after a dropped connection that lose no event and repeat none (a scripted stream on httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from aifx_client import AIFXClient, AIFXConnectionError, AIFXRequestError, AIFXResponseError, AsyncAIFXClient
from aifx_client.sse import Follow, Reconnect
from aifx_client.testing import envelope

pytestmark = pytest.mark.unit

URL = "http://aifx.test"
FAST = Reconnect(backoff=0.0, jitter=False)


def event_data(i: int) -> dict:
    """The data of event i as the service sends it (an active version's answer and every version's decision)."""
    answer = {"pair": "EUR/USD", "timeframe": "1h", "signal": "long", "confidence": 0.7, "stage1_prob": 0.8,
              "stage2_prob": 0.7, "model_version": "v3.1",
              "trade": {"entry": 1.1, "stop_loss": 1.09, "take_profit": 1.12, "horizon_bars": 12}}  # fmt: skip
    versions = {"v3.1": {"signal": "long", "confidence": 0.7, "stage1_prob": 0.8, "stage2_prob": 0.7},
                "v3.0": {"signal": "hold", "confidence": 0.6, "stage1_prob": 0.4, "stage2_prob": None}}  # fmt: skip
    return {"id": i, "pair": "EUR/USD", "timeframe": "1h", "bar_time": f"2026-01-05T{i % 24:02d}:00:00+00:00",
            "active_version": "v3.1", "signal": answer, "versions": versions}  # fmt: skip


def frame(i: int, newline: str = "\n") -> str:
    lines = [f"id: {i}", "event: signal", f"data: {json.dumps(event_data(i))}", ""]
    return newline.join(lines) + newline


@dataclass
class Stream:
    """The service's stream: events 1..total; connection k delivers cuts[k] events after Last-Event-ID, then
    drops (a transport error) or, past the cuts, ends; chunks split lines anywhere."""

    total: int
    cuts: list[int]
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    asked: list[str | None] = field(default_factory=list)  # Last-Event-ID of each connection
    replay_from_start: bool = False  # a server that repeats events already sent

    def handler(self, request: httpx.Request) -> httpx.Response:
        last = request.headers.get("last-event-id")
        self.asked.append(last)
        start = 0 if self.replay_from_start or last is None else int(last)
        k = len(self.asked) - 1
        count = self.cuts[k] if k < len(self.cuts) else self.total
        text = "retry: 5\n\n: keep-alive\n\n" + "".join(
            frame(i, "\r\n" if i % 3 == 0 else "\n") for i in range(start + 1, min(self.total, start + count) + 1)
        )  # fmt: skip
        drop = k < len(self.cuts)
        stream = _Chunks(self._chunks(text.encode()), drop)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    def _chunks(self, data: bytes) -> list[bytes]:
        out, i = [], 0
        while i < len(data):
            n = self.rng.randint(1, 300)
            out.append(data[i : i + n])
            i += n
        return out


class _Chunks(httpx.AsyncByteStream, httpx.SyncByteStream):
    """A response body in chunks, for either client; drop: a transport error after the last chunk."""

    def __init__(self, pieces: list[bytes], drop: bool) -> None:
        self.pieces, self.drop = pieces, drop

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p
        if self.drop:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.drop:
            raise httpx.ReadError("connection reset by peer")


def read_async(handler, n: int, **kwargs) -> tuple[list[int], AsyncAIFXClient]:
    async def main() -> tuple[list[int], AsyncAIFXClient]:
        async with AsyncAIFXClient(URL, transport=httpx.MockTransport(handler)) as client:
            ids = []
            async with contextlib.aclosing(client.signals("EUR/USD", "1h", reconnect=FAST, **kwargs)) as events:
                async for e in events:
                    ids.append(e.id)
                    if len(ids) == n:
                        break
            return ids, client

    return asyncio.run(main())


def test_reconnects_after_dropped_connections_without_loss_or_duplicates():
    stream = Stream(total=60, cuts=[7, 0, 13, 1, 20])
    ids, client = read_async(stream.handler, 60)
    assert ids == list(range(1, 61))
    # Each reconnect asks for what follows the last event delivered.
    assert stream.asked == [None, "7", "7", "20", "21", "41"]
    assert client.stats.reconnects == 5


def test_events_a_server_repeats_are_dropped():
    stream = Stream(total=12, cuts=[5, 9], replay_from_start=True)
    ids, _ = read_async(stream.handler, 12)
    assert ids == list(range(1, 13))
    assert stream.asked == [None, "5", "9"]


def test_resumes_after_an_event_seen_before():
    stream = Stream(total=10, cuts=[])
    ids, _ = read_async(stream.handler, 4, last_event_id=6)
    assert ids == [7, 8, 9, 10] and stream.asked == ["6"]


def test_the_sync_client_follows_the_same_way():
    stream = Stream(total=30, cuts=[4, 11])
    with AIFXClient(URL, transport=httpx.MockTransport(stream.handler)) as client:
        with contextlib.closing(client.signals("EUR/USD", "1h", reconnect=FAST)) as events:
            got = [e for _, e in zip(range(30), events, strict=False)]
    assert [e.id for e in got] == list(range(1, 31)) and stream.asked == [None, "4", "15"]
    first = got[0]
    assert (
        first.signal is not None
        and first.signal.signal == "long"
        and first.signal.trade is not None
        and first.signal.trade.entry == 1.1
    )
    assert first.versions["v3.0"].signal == "hold" and first.bar_time.hour == 1


def test_a_refusal_that_cannot_change_raises_at_once():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(422, json=envelope(None, "pair: 'ABC/XYZ' is not in the instrument table"))

    with pytest.raises(AIFXRequestError, match="instrument table") as info:
        read_async(handler, 1)
    assert info.value.status == 422 and len(calls) == 1


def test_too_many_streams_and_outages_are_retried_with_bounded_backoff():
    answers = iter([httpx.Response(429, json=envelope(None, "at most 4 signal streams per client")),
                    httpx.Response(503, text="overloaded"), httpx.ConnectError("refused")])  # fmt: skip
    stream = Stream(total=3, cuts=[])

    def handler(request: httpx.Request) -> httpx.Response:
        reply = next(answers, None)
        if isinstance(reply, Exception):
            raise reply
        return reply if reply is not None else stream.handler(request)

    ids, client = read_async(handler, 3)
    assert ids == [1, 2, 3] and client.stats.reconnects == 3


def test_max_failures_in_a_row_raise():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    async def main() -> None:
        policy = Reconnect(backoff=0.0, max_failures=3)
        async with AsyncAIFXClient(URL, transport=httpx.MockTransport(handler)) as client:
            async for _ in client.signals("EUR/USD", reconnect=policy):
                pass

    with pytest.raises(AIFXConnectionError, match="after 3 attempt"):
        asyncio.run(main())


def test_a_body_that_is_no_event_stream_is_an_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, html="<html>proxy login</html>")

    with pytest.raises(AIFXResponseError, match="not text/event-stream"):
        read_async(handler, 1)


def feed(follow: Follow, text: str) -> list:
    return [e for line in text.splitlines() if (e := follow.feed(line)) is not None]


def test_parsing_follows_the_event_stream_format():
    follow = Follow(URL, None, FAST)
    data = json.dumps(event_data(3))
    cut = data.index(', "pair"') + 1  # between two members: the newline that joins data lines is whitespace
    text = (
        ": comment\n\n"  # a keep-alive: nothing
        "retry: 2500\n"
        "retry: soon\n\n"  # not digits: ignored
        f"event: other\ndata: {data}\n\n"  # another event type: ignored
        f"id: 3\nevent: signal\ndata:{data[:cut]}\ndata:{data[cut:]}\n\n"  # data lines joined by a newline
        "id: 9\n\n"  # an id without data sets the stream's id but dispatches nothing
        "data\n\n"  # a field without a colon: an empty data line
        f"event: signal\nunknown: x\ndata: {json.dumps(event_data(4))}\n"  # not dispatched: no blank line
    )
    got = feed(follow, text)
    assert [e.id for e in got] == [3] and follow.retry_s == 2.5 and follow.last_id == 3
    assert follow.delay() <= 2.5


def test_an_event_whose_id_differs_from_its_data_is_an_error():
    follow = Follow(URL, None, FAST)
    with pytest.raises(AIFXResponseError, match="differs"):
        feed(follow, f"id: 5\nevent: signal\ndata: {json.dumps(event_data(6))}\n\n")
    with pytest.raises(AIFXResponseError, match="not a SignalEvent"):
        feed(follow, "event: signal\ndata: {not json\n\n")


def test_backoff_doubles_per_failure_up_to_its_bound():
    follow = Follow(URL, None, Reconnect(backoff=0.5, max_backoff=3.0, jitter=False))
    waits = []
    for _ in range(6):
        follow.dropped(httpx.ConnectError("refused"))
        waits.append(follow.delay())
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    jittered = Follow(URL, None, Reconnect(backoff=1.0))
    jittered.dropped(httpx.ConnectError("refused"))
    assert all(0.5 <= jittered.delay(random.Random(s)) <= 1.0 for s in range(20))
