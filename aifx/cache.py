"""Shared state read from the database: at most once per ttl, off the event loop, with a timeout."""

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
    """A cached value whose blocking read runs in a worker thread; the last known value while reads fail.

    A read that exceeds `timeout` is abandoned (its thread finishes on its own) and no new read
    starts until it has, so a database that stops answering holds at most one thread.
    """

    def __init__(
        self,
        name: str,
        read: Callable[[], T | None],
        ttl: float,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._read = read
        self.ttl = ttl
        self.timeout = timeout
        self._clock = clock
        self._value: T | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()
        self._reading = False

    async def get(self) -> T | None:
        """The value, re-read when older than ttl."""
        if self._clock() - self._read_at < self.ttl:
            return self._value
        async with self._lock:
            if self._clock() - self._read_at < self.ttl:
                return self._value
            if not self._reading:
                await self._refresh()
            self._read_at = self._clock()
        return self._value

    def put(self, value: T | None) -> None:
        """This worker changed the stored value: use it at once."""
        self._value = value
        self._read_at = self._clock()

    def expire(self) -> None:
        """Read again on the next get."""
        self._read_at = float("-inf")

    async def _refresh(self) -> None:
        self._reading = True
        try:
            with anyio.fail_after(self.timeout):
                self._value = await anyio.to_thread.run_sync(self._guarded_read, abandon_on_cancel=True)
        except TimeoutError:
            logger.warning("%s: no answer within %g s, keeping %r", self.name, self.timeout, self._value)
        except Exception as exc:  # noqa: BLE001 - a database outage must not stop serving
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            logger.warning("%s unreadable, keeping %r: %s", self.name, self._value, first)

    def _guarded_read(self) -> T | None:
        """Runs in the worker thread; clears the in-flight flag even when the caller gave up."""
        try:
            return self._read()
        finally:
            self._reading = False
