"""Following GET /reversal/signals/stream: Server-Sent Events parsing and the reconnect state, no I/O here.

The clients (aio.py, client.py) open the stream and hand each line to Follow.feed; Follow parses the
lines as the HTML standard's event-stream format (fields `id`, `event`, `data`, `retry`; comments and
keep-alives), turns each `signal` event into a SignalEvent, drops any event at or before the last one
delivered (so a reconnect never repeats one), and says how long to wait before the next connection
(the server's `retry`, doubled per consecutive failure up to a bound).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field

import httpx
from pydantic import ValidationError

from aifx_client.errors import AIFXConnectionError, AIFXResponseError
from aifx_client.models import SignalEvent
from aifx_client.protocol import http_error

STREAM_PATH = "/reversal/signals/stream"
# Statuses after which connecting again may succeed: too many streams (one may close), overload, restarts.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
logger = logging.getLogger("aifx_client")


@dataclass(frozen=True)
class Reconnect:
    """How a stream reconnects: the first wait (unless the server sends `retry`), doubled per consecutive
    failure up to max_backoff; max_failures consecutive failed connections raise (None: never give up).

    read_timeout: seconds without a byte (the server sends a keep-alive every 15 s) before the
    connection counts as dropped.
    """

    backoff: float = 1.0
    max_backoff: float = 30.0
    max_failures: int | None = None
    jitter: bool = True
    read_timeout: float = 45.0

    def __post_init__(self) -> None:
        if self.backoff < 0 or self.max_backoff < 0 or not self.read_timeout > 0:
            raise ValueError("Reconnect: backoff and max_backoff must be >= 0, read_timeout > 0")
        if self.max_failures is not None and self.max_failures < 1:
            raise ValueError("Reconnect.max_failures must be >= 1 or None")


@dataclass
class Message:
    """The fields of the event being read (the standard's buffers)."""

    event: str = ""
    data: list[str] = field(default_factory=list)
    id: str | None = None


class Follow:
    """One subscription across connections: what was delivered last and when to connect again."""

    def __init__(self, url: str, last_event_id: int | None, policy: Reconnect) -> None:
        self.url = url
        self.policy = policy
        self.last_id: int | None = last_event_id
        self.retry_s: float | None = None  # the server's `retry`, once sent
        self.failures = 0  # consecutive connections that failed or dropped
        self.connections = 0
        self.duplicates = 0  # events at or before the last delivered one, dropped
        self._pending = Message()
        self._stream_id: str | None = None  # the standard's "last event ID" of this connection

    def headers(self) -> dict[str, str]:
        """Headers of the next connection: Last-Event-ID once an event was delivered."""
        head = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id is not None:
            head["Last-Event-ID"] = str(self.last_id)
        return head

    def timeout(self, connect: float) -> httpx.Timeout:
        """The client's timeout to connect and send; the policy's read timeout between bytes."""
        return httpx.Timeout(connect, read=self.policy.read_timeout)

    def opened(self, response: httpx.Response) -> bool:
        """True for a stream to read; False to connect again later; raises for an answer that will not change."""
        self._pending, self._stream_id = Message(), None
        status = response.status_code
        if status == 200:
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise AIFXResponseError(self.url, f"HTTP 200 with Content-Type {kind!r}, not text/event-stream")
            self.connections += 1
            self.failures = 0
            return True
        error = http_error(response, self.url)
        if status not in RETRY_STATUSES:
            raise error  # a bad pair or timeframe (422), signals off (409), no such route (404): final
        self._fail(str(error))
        return False

    def dropped(self, exc: Exception) -> None:
        """A connection attempt or an open stream failed in transit (raises once max_failures are spent)."""
        self._fail(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    def ended(self) -> None:
        """The server closed the stream (its lifetime, a reader too slow): connect again after `retry`."""
        self._fail("the server closed the stream")

    def delay(self, rng: random.Random | None = None) -> float:
        """Seconds to wait before the next connection."""
        base = self.policy.backoff if self.retry_s is None else self.retry_s
        ceiling = min(self.policy.max_backoff, base * 2 ** max(0, self.failures - 1))
        wait = (rng or random).uniform(ceiling / 2, ceiling) if self.policy.jitter else ceiling
        logger.info("signal stream %s: reconnecting in %.2f s after event %s", self.url, wait, self.last_id)
        return wait

    def feed(self, line: str) -> SignalEvent | None:
        """One line of the stream (without its line ending); the event it completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._pending.data.append(value)
        elif name == "event":
            self._pending.event = value
        elif name == "id" and "\0" not in value:
            self._pending.id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_s = int(value) / 1000
        return None  # other fields are ignored, as the standard says

    def _dispatch(self) -> SignalEvent | None:
        message, self._pending = self._pending, Message()
        if message.id is not None:
            self._stream_id = message.id
        if not message.data or (message.event or "message") != "signal":
            return None
        event = self._parse("\n".join(message.data), self._stream_id)
        if self.last_id is not None and event.id <= self.last_id:
            self.duplicates += 1
            return None
        self.last_id = event.id
        return event

    def _parse(self, data: str, stream_id: str | None) -> SignalEvent:
        try:
            event = SignalEvent.model_validate(json.loads(data))
        except (ValueError, ValidationError) as exc:
            raise AIFXResponseError(self.url, f"a signal event that is not a SignalEvent: {exc}") from exc
        if stream_id is not None and stream_id != str(event.id):
            raise AIFXResponseError(self.url, f"event id {stream_id!r} differs from its data's id {event.id}")
        return event

    def _fail(self, why: str) -> None:
        self.failures += 1
        limit = self.policy.max_failures
        if limit is not None and self.failures >= limit:
            raise AIFXConnectionError(self.url, why, self.failures)
        logger.info("signal stream %s failed (%d in a row): %s", self.url, self.failures, why)
