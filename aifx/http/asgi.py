"""ASGI plumbing: the body-size limit and the per-worker budget of body bytes (bounded endpoint labels for
BentoML's /metrics: route_labels.py)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aifx import metrics
from aifx.serving.errors import envelope
from aifx.serving.schemas import MAX_BATCH_ITEMS, MAX_CANDLES

if TYPE_CHECKING:
    from aifx.settings import Settings

Scope = dict[str, Any]


BATCH_PATHS = frozenset({"/reversal/predict/batch", "/v1/predict_batch"})
PREDICT_PATHS = frozenset(
    {"/reversal/predict", "/reversal/compare", "/predict", "/v1/predict", "/v1/compare", "/reversal/candles"}
)
BUDGET_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class BodyLimits:
    """The largest body of each route (413 beyond) and the body bytes one worker holds at once."""

    batch: int  # POST /reversal/predict/batch: AIFX_MAX_BODY_BYTES
    predict: int  # predict, compare, legacy /predict: AIFX_MAX_PREDICT_BODY_BYTES
    other: int  # every other route (experiments, outcomes, admin): AIFX_MAX_OTHER_BODY_BYTES
    budget: int  # per worker: AIFX_BODY_BUDGET_BYTES
    read_seconds: float = 10.0  # a whole body must arrive within this (AIFX_BODY_READ_SECONDS), else 408

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(
            settings.max_body_bytes,
            settings.max_predict_body_bytes,
            settings.max_other_body_bytes,
            settings.body_budget_bytes,
            settings.body_read_seconds,
        )

    def route(self, path: str) -> tuple[int, str]:
        """The limit of the route at path and what to send instead of a larger body."""
        if path in BATCH_PATHS:
            return self.batch, f"send fewer items (at most {MAX_BATCH_ITEMS}) or fewer candles per item"
        if path in PREDICT_PATHS:
            return self.predict, (
                f"send at most {MAX_CANDLES:,} candles (the service uses only the last min_candles of them, "
                "e.g. 53 for v3.1) or use /reversal/predict/batch"
            )
        return self.other, "this route takes a small JSON object: send only its documented fields"


LARGE_BODY_BYTES = 65_536  # a body announcing more than this reads in one of the budget's large slots
LARGE_SLOT_BYTES = 1_000_000  # one slot per this many bytes of budget: two with the 2 MB default


class ByteBudget:
    """Bytes of request bodies one worker holds at once: a chunk that would pass the budget waits (FIFO).

    Reserved as the bytes arrive (a slow upload that announces 1 MB and sends one byte holds one
    byte), released when the response is complete. One body larger than the whole budget runs alone.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Large bodies read one slot at a time: many of them taking the budget chunk by chunk would each
        # hold a share and all wait for more (none completes). Small bodies (a predict's ~6 KB) need no slot.
        self.large = asyncio.Semaphore(max(1, capacity // LARGE_SLOT_BYTES))

    async def acquire(self, size: int, timeout: float) -> int | None:
        """Reserve size bytes (at most the capacity); the bytes reserved, or None after timeout seconds."""
        size = min(size, self.capacity)
        if not self._waiters and self.used + size <= self.capacity:
            self.used += size
            return size
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (size, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await future
            return size
        except TimeoutError:
            if future.done() and not future.cancelled():  # granted just as the time ran out
                self.release(size)
            return None
        except BaseException:
            if future.done() and not future.cancelled():
                self.release(size)
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            self._wake()

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():  # its request gave up
                self._waiters.popleft()
                continue
            if self.used + size > self.capacity:
                return
            self._waiters.popleft()
            self.used += size
            future.set_result(None)


class BodySizeLimit:
    """413 (seed envelope) for a body over its route's limit, by Content-Length or while streaming;
    and a per-worker budget of body bytes in flight, so that many large bodies at once cannot
    exhaust memory.

    Parsed JSON is much larger than its text: 1 MB of `[]` or `{}` lists, or of small numbers,
    peaks at 36-62 MB while pydantic-core parses and validates it (jiter's tree plus the Python
    objects; measured on every route's model with pydantic-core 2.50). Worst case per worker is
    about 62 x AIFX_BODY_BUDGET_BYTES plus the start-up footprint, whatever the concurrency.
    """

    def __init__(
        self,
        app: Any,
        limits: BodyLimits | None = None,
        max_bytes: int | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        """Per-route limits, or one max_bytes for every route (and a budget of 4 such bodies); a shared budget."""
        if limits is None:
            if max_bytes is None:
                raise TypeError("BodySizeLimit needs limits or max_bytes")
            limits = BodyLimits(max_bytes, max_bytes, max_bytes, 4 * max_bytes)
        self.app = app
        self.limits = limits
        self.budget = budget if budget is not None else ByteBudget(limits.budget)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, hint = self.limits.route(scope.get("path", ""))
        length = _content_length(scope)
        if length is not None and length > max_bytes:
            await _reject(send, max_bytes, hint)
            return
        expected = length if length is not None else (max_bytes if _chunked(scope) else 0)
        slot = expected > LARGE_BODY_BYTES
        if slot:
            try:
                async with asyncio.timeout(BUDGET_WAIT_SECONDS):
                    await self.budget.large.acquire()
            except TimeoutError:
                await _busy(send)
                return
        reading = _Reading(self.budget, asyncio.get_running_loop().time() + self.limits.read_seconds)
        try:
            await self._limited(scope, receive, send, max_bytes, hint, reading)
        finally:
            if reading.reserved:
                self.budget.release(reading.reserved)
            if slot:
                self.budget.large.release()

    async def _limited(
        self, scope: Scope, receive: Any, send: Any, max_bytes: int, hint: str, reading: _Reading
    ) -> None:
        async def limited_receive() -> dict[str, Any]:
            if reading.rejected:
                return {"type": "http.disconnect"}
            if reading.complete:  # the body is in: a later receive waits for the disconnect, without a deadline
                return dict(await receive())
            try:
                async with asyncio.timeout_at(reading.deadline):
                    message = await receive()
            except TimeoutError:  # a slow sender: its bytes and its slot go back now
                await reading.refuse(_too_slow(send, self.limits.read_seconds))
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                reading.complete = not message.get("more_body", False)
                chunk = len(message.get("body", b""))
                reading.seen += chunk
                if reading.seen > max_bytes:
                    await reading.refuse(_reject(send, max_bytes, hint))
                    return {"type": "http.disconnect"}
                if not await reading.take(chunk):
                    await reading.refuse(_busy(send))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if not reading.rejected:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


class _Reading:
    """One request's body as it arrives: bytes seen and reserved, its deadline, whether it was refused."""

    def __init__(self, budget: ByteBudget, deadline: float) -> None:
        self.budget, self.deadline = budget, deadline
        self.seen = self.reserved = 0
        self.rejected = self.complete = False

    async def take(self, size: int) -> bool:
        """Reserve size more bytes (one request holds at most the whole budget); False after the wait."""
        size = min(size, self.budget.capacity - self.reserved)
        if size <= 0:
            return True
        got = await self.budget.acquire(size, BUDGET_WAIT_SECONDS)
        if got is None:
            return False
        self.reserved += got
        return True

    async def refuse(self, answer: Coroutine[Any, Any, None]) -> None:
        """Send the refusal once; the route's own answer is dropped from then on."""
        if self.rejected:
            answer.close()
            return
        self.rejected = True
        await answer


async def _reject(send: Any, max_bytes: int, hint: str) -> None:
    metrics.count_error("body_too_large")
    await _answer(send, 413, f"request body is larger than {max_bytes:,} bytes, this route's limit; {hint}")


async def _too_slow(send: Any, seconds: float) -> None:
    metrics.count_error("body_too_slow")
    message = f"request body not received within {seconds:g} s (AIFX_BODY_READ_SECONDS); send it at once"
    await _answer(send, 408, message, [(b"connection", b"close")])


async def _busy(send: Any) -> None:
    metrics.count_error("rate_limited")
    message = (
        f"the server is busy with other large request bodies (still waiting after {BUDGET_WAIT_SECONDS:g} s); "
        "retry in a moment"
    )
    await _answer(send, 503, message, [(b"retry-after", b"1")])


async def _answer(send: Any, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(envelope(None, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _chunked(scope: Scope) -> bool:
    """A body without Content-Length (Transfer-Encoding); without either header a request has no body."""
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", []))
