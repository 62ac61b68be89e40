"""GET /reversal/signals/stream (Server-Sent Events) and /reversal/signals/latest: every bar's signals as they happen.

An event per bar that trusted candles close: the active version's answer as predict returns it (with
`trade`) and every other loaded version's decision. Events carry their id; a client that reconnects
with `Last-Event-ID` gets what it missed from the database first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.responses import JSONResponse, StreamingResponse

from aifx import instruments
from aifx.http.envelope import ERROR_RESPONSES, ok
from aifx.http.ratelimit import client_key
from aifx.http.responses import Envelope
from aifx.http.signal_responses import SignalEvent
from aifx.serving.context import get_logger
from aifx.serving.errors import ApiError
from aifx.serving.parts import Parts
from aifx.serving.signal_hub import QUEUE, SignalHub, Subscriber

router = APIRouter(responses=ERROR_RESPONSES)  # the envelope for every error, as the app's own routes
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream
logger = get_logger("bentoml.aifx.signals")


def _hub(request: Request) -> SignalHub:
    parts: Parts = request.app.state.parts
    if parts.signals is None:
        raise ApiError("signal streams need the outcome loop (AIFX_OUTCOMES=true)", status=409, reason="conflict")
    return parts.signals


def _series(pair: str, timeframe: str, request: Request) -> tuple[str, str]:
    """The canonical pair and timeframe (422 for what no event can be about)."""
    inst = instruments.instrument(pair, request.app.state.parts.registry.settings.pip_sizes)
    if inst is None:
        raise ApiError(f"pair: {pair!r:.40} is not in the instrument table: no signal events are made for it", 422)
    tf = instruments.canonical_timeframe(timeframe)
    if tf is None:
        raise ApiError(f"timeframe: {timeframe!r:.20} is not a timeframe such as 1m, 15m, 1h, 4h, 1d or 1w", 422)
    return inst.name, tf


Pair = Annotated[str, Query(min_length=1, max_length=32, examples=["EUR/USD"])]
Timeframe = Annotated[str, Query(min_length=1, max_length=16, examples=["1h"])]


@router.get("/reversal/signals/latest", tags=["signals"], response_model=Envelope[SignalEvent])
async def latest(request: Request, pair: Pair, timeframe: Timeframe) -> JSONResponse:
    """The last signal event of a pair and timeframe (null before the first)."""
    hub = _hub(request)
    p, tf = _series(pair, timeframe, request)
    event = await asyncio.to_thread(hub.store.latest, p, tf)
    return ok(public(event) if event is not None else None)


@router.get(
    "/reversal/signals/stream",
    tags=["signals"],
    response_class=StreamingResponse,
    responses={200: {"description": "Server-Sent Events: `id`, `event: signal`, `data` = a SignalEvent as JSON",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)  # fmt: skip
async def stream(
    request: Request,
    pair: Pair,
    timeframe: Timeframe,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=2**62)] = None,
) -> StreamingResponse:
    """Server-Sent Events: `event: signal`, `id`, `data` = the event's JSON; replays after Last-Event-ID."""
    hub = _hub(request)
    p, tf = _series(pair, timeframe, request)
    sub = hub.subscribe(p, tf, client_key(dict(request.scope)))  # before the replay: nothing falls in between
    settings = request.app.state.parts.registry.settings
    body = _events(hub, sub, last_event_id, settings.signals_max_stream_seconds)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return EventStream(body, settings.signals_send_seconds, media_type="text/event-stream", headers=headers)


class EventStream(StreamingResponse):
    """A stream each of whose writes must reach the client's socket within send_s, else it is closed.

    A client that stops reading fills the socket buffers, then the server's write waits; without a bound
    its subscription (and one of BentoML's request slots) would be held for as long as it stays connected.
    """

    def __init__(self, content: AsyncIterator[str], send_s: float, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.send_s = send_s
        self.cut = False

    async def stream_response(self, send: Any) -> None:
        async def bounded(message: Any) -> None:
            try:
                async with asyncio.timeout(self.send_s):
                    await send(message)
            except TimeoutError:
                self.cut = True
                raise

        try:
            await super().stream_response(bounded)
        except TimeoutError:
            if not self.cut:
                raise
            logger.info("signal stream closed: its client took no bytes for %g s", self.send_s)
            # Returning without the final message makes the server close the connection.
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]  # unsubscribes (the generator's finally)


async def _events(hub: SignalHub, sub: Subscriber, after: int | None, life_s: float) -> AsyncIterator[str]:
    """The stream: the missed events, then new ones as they come, heartbeats between; closed after life_s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + life_s
    sent = after
    try:
        yield "retry: 1000\n\n"
        while after is not None:  # replay in pages from the database
            page = await asyncio.to_thread(hub.store.after, sub.pair, sub.timeframe, after)
            for event in page:
                yield frame(event)
                sent = event["id"]
            if len(page) < 1_000:
                break
            after = sent
        while loop.time() < end:  # a closed subscriber still hands over what it queued, then None
            try:
                async with asyncio.timeout(min(HEARTBEAT_S, max(0.0, end - loop.time()))):
                    new = await sub.queue.get()
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if new is None:
                if sub.overflowed:
                    yield f": closed: this reader fell {QUEUE} events behind; reconnect with Last-Event-ID\n\n"
                break
            event = new
            if sent is not None and event["id"] <= sent:
                continue
            yield frame(event)
            sent = event["id"]
    finally:
        hub.unsubscribe(sub)


def public(event: dict[str, Any]) -> dict[str, Any]:
    """An event as clients see it."""
    return {"id": event["id"], "pair": event["pair"], "timeframe": event["timeframe"], "bar_time": event["bar_time"],
            **event["payload"]}  # fmt: skip


def frame(event: dict[str, Any]) -> str:
    """One Server-Sent Event."""
    return f"id: {event['id']}\nevent: signal\ndata: {json.dumps(public(event), separators=(',', ':'))}\n\n"
