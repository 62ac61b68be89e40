"""Shared state read from the database: at most once per ttl, off the event loop, never blocking a request long.

The first read waits at most `timeout` (if it fails, the value stays None: the caller's default).
After that a caller that finds the value stale starts one refresh and waits for it at most
`fresh_wait` (a healthy database answers in about a millisecond, so a change made in another worker
is seen within the ttl); if the read takes longer, the caller gets the last known value at once
and the read goes on in the background, so a database that stops answering costs requests at most
`fresh_wait`. A read that exceeds `timeout` is
abandoned (its thread finishes on its own) and no new read starts until it has: a database that
stops answering holds at most one thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio

T = TypeVar("T")
logger = logging.getLogger("bentoml.aifx.cache")


class SharedState(Generic[T]):
    """A cached value whose blocking read runs in a worker thread; the last known value while reads fail."""

    def __init__(
        self,
        name: str,
        read: Callable[[], T | None],
        ttl: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        fresh_wait: float = 0.1,
    ) -> None:
        self.name = name
        self.fresh_wait = fresh_wait
        self._read = read
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        self._value: T | None = None
        self._known = False  # a first read has been tried: from then on, refreshes never block a caller
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._reading = False
        self._task: asyncio.Task[None] | None = None

    async def get(self) -> T | None:
        """The value; re-read when older than ttl (in the background once a value is known)."""
        if self._clock() - self._read_at < self.ttl:
            return self._value
        if self._known:
            if not self._reading and (self._task is None or self._task.done()):
                self._read_at = self._clock()  # one refresh per ttl, however many callers
                self._task = asyncio.get_running_loop().create_task(self._refresh())
            if self._task is not None and not self._task.done():
                await asyncio.wait({self._task}, timeout=self.fresh_wait)
            return self._value
        async with self._lock:
            if not self._known:
                await self._refresh()  # bounded by timeout; on failure the value stays None (the defaults)
                self._known = True
                self._read_at = self._clock()
        return self._value

    def put(self, value: T | None) -> None:
        """This worker changed the stored value: use it at once."""
        self._value = value
        self._known = True
        self._read_at = self._clock()

    def expire(self) -> None:
        """Read again on the next get."""
        self._read_at = float("-inf")

    async def wait_idle(self) -> None:
        """Wait for a background refresh (tests, shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _refresh(self) -> None:
        self._reading = True
        try:
            with anyio.fail_after(self.timeout):
                self._value = await anyio.to_thread.run_sync(self._guarded_read, abandon_on_cancel=True)
        except TimeoutError:
            logger.warning("%s: no answer within %g s, keeping %r", self.name, self.timeout, self._value)
        except Exception as exc:  # noqa: BLE001 - a database outage must not stop serving
            self._reading = False
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            logger.warning("%s unreadable, keeping %r: %s", self.name, self._value, first)

    def _guarded_read(self) -> T | None:
        """Runs in the worker thread; clears the in-flight flag even when the caller gave up."""
        try:
            return self._read()
        finally:
            self._reading = False
