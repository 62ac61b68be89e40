"""Signal subscribers of one entry worker: events of every worker and replica reach them from the database.

Each worker follows the event table from the newest id it has seen: PostgreSQL wakes it with NOTIFY
(experiments/signals.py), on SQLite a commit to the database files does (two stat calls every 20 ms),
the worker that published an event wakes it at once, and a bounded poll covers anything missed.
Subscriptions are bounded per client and per worker; a subscriber that does not read (its queue full)
is closed, so its cost stays bounded, and reconnects with Last-Event-ID to miss nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aifx import metrics
from aifx.serving.context import get_logger
from aifx.serving.errors import ApiError
from experiments.signals import SignalStore

logger = get_logger("bentoml.aifx.signals")
QUEUE = 256  # events a subscriber may be behind before it is closed
WATCH_S = 0.02  # SQLite: how often a worker looks for another worker's commit


class TooManySubscriptions(ApiError):
    """429: the client or the worker holds as many subscriptions as allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=429, reason="rate_limited")


@dataclass(eq=False)
class Subscriber:
    """One open stream: its series, its client and the events waiting for it (None: closed)."""

    pair: str
    timeframe: str
    client: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE + 1))
    closed: bool = False
    overflowed: bool = False  # closed because it fell QUEUE events behind

    def offer(self, event: dict[str, Any]) -> None:
        """Queue an event, or close a subscriber that stopped reading."""
        if self.closed:
            return
        if self.queue.qsize() >= QUEUE:
            self.overflowed = True
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class SignalHub:
    """The subscribers of this worker and the loop that hands them new events."""

    def __init__(self, store: SignalStore, max_total: int, max_per_client: int, poll_s: float) -> None:
        self.store = store
        self.max_total, self.max_per_client, self.poll_s = max_total, max_per_client, poll_s
        self._subs: dict[tuple[str, str], set[Subscriber]] = {}
        self._clients: Counter[str] = Counter()
        self._series: Counter[tuple[str, str]] = Counter()
        self._wake = asyncio.Event()
        self.last_id: int | None = None

    def __len__(self) -> int:
        return sum(self._clients.values())

    def subscribe(self, pair: str, timeframe: str, client: str) -> Subscriber:
        """A new subscriber (429 beyond the limits)."""
        if len(self) >= self.max_total:
            raise TooManySubscriptions(f"this worker serves {self.max_total} signal streams already; retry later")
        if self._clients[client] >= self.max_per_client:
            raise TooManySubscriptions(f"at most {self.max_per_client} signal streams per client; close one first")
        sub = Subscriber(pair, timeframe, client)
        self._subs.setdefault((pair, timeframe), set()).add(sub)
        self._clients[client] += 1
        self._count(sub, 1)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get((sub.pair, sub.timeframe), set())
        if sub in subs:
            subs.discard(sub)
            if not subs:
                del self._subs[(sub.pair, sub.timeframe)]
            self._clients[sub.client] -= 1
            if self._clients[sub.client] <= 0:
                del self._clients[sub.client]
            self._count(sub, -1)
        sub.close()

    def _count(self, sub: Subscriber, change: int) -> None:
        """Subscribers per metric series (timeframes outside the metrics' set share "other")."""
        labels = metrics.signal_series(sub.pair, sub.timeframe)
        self._series[labels] += change
        metrics.set_signal_subscribers(*labels, self._series[labels])

    def kick(self) -> None:
        """New events were published in this worker: hand them out now."""
        self._wake.set()

    def deliver(self, events: list[dict[str, Any]]) -> None:
        """Offer each event to the subscribers of its series."""
        now = time.time()
        for event in events:
            for sub in list(self._subs.get((event["pair"], event["timeframe"]), ())):
                sub.offer(event)
            created = event.get("created")
            if isinstance(created, float):
                metrics.SIGNAL_PUBLISH_LATENCY.observe(max(0.0, now - created))

    async def run(self) -> None:
        """Follow the event table forever: woken by PostgreSQL's NOTIFY or a commit to SQLite's files, else
        every poll_s."""
        loop = asyncio.get_running_loop()
        loop.create_task(self._listen() if not self.store.sqlite else self._watch())
        while True:
            try:
                await self._step()
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again at the next wake
                logger.warning("signal events unavailable: %s", type(exc).__name__)
            try:
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()

    async def _step(self) -> None:
        if self.last_id is None:
            self.last_id = await asyncio.to_thread(self.store.newest_id)
            for pair, timeframe, bar_time in await asyncio.to_thread(self.store.newest_bars):
                metrics.signal_seen(pair, timeframe, bar_time)  # the stall deadlines survive a restart
        while True:
            events = await asyncio.to_thread(self.store.after, None, None, self.last_id)
            if not events:
                return
            self.last_id = events[-1]["id"]
            for event in events:
                metrics.signal_seen(event["pair"], event["timeframe"], datetime.fromisoformat(event["bar_time"]))
            if self._subs:
                self.deliver(events)
            if len(events) < 1_000:
                return

    async def _watch(self) -> None:
        """SQLite: wake the loop when a commit changed the database files (two stat calls every WATCH_S)."""
        seen = self.store.change_mark()
        while seen is not None:
            await asyncio.sleep(WATCH_S)
            mark = self.store.change_mark()
            if mark != seen:
                seen = mark
                self._wake.set()

    async def _listen(self) -> None:
        """PostgreSQL: wake the loop on every NOTIFY; reconnect after a failure."""
        while True:
            try:
                async for _ in self.store.notifications():
                    self._wake.set()
            except Exception as exc:  # noqa: BLE001 - reconnect; polling covers the gap
                logger.warning("signal listener reconnecting: %s", type(exc).__name__)
            await asyncio.sleep(1.0)
