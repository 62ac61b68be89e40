"""Shared state (active version, active experiment): TTL, off-loop reads, a timeout and one thread at most."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from aifx.cache import SharedState

pytestmark = pytest.mark.unit


class SlowStore:
    """A database read that can hang until released, or fail."""

    def __init__(self) -> None:
        self.value = "v3.1"
        self.reads = 0
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def read(self) -> str:
        self.reads += 1
        self.release.wait(10)
        if self.fail:
            raise ConnectionError("connection refused\nsecond line")
        return self.value


def test_a_hanging_database_costs_a_caller_at_most_the_fresh_wait():
    store, now = SlowStore(), [0.0]
    state = SharedState("active version", store.read, ttl=0.5, timeout=0.2, clock=lambda: now[0], fresh_wait=0.1)

    async def scenario() -> None:
        assert await state.get() == "v3.1"
        store.release.clear()  # the database stops answering
        store.value = "v3.0"
        waits = []
        for step in range(1, 20):
            now[0] = step * 0.6  # every call is past the ttl
            t0 = time.monotonic()
            assert await state.get() == "v3.1"  # the last known value
            waits.append(time.monotonic() - t0)
            await asyncio.sleep(0.02)
        assert 0.08 < waits[0] < 0.2 and max(waits) < 0.2  # at most the fresh wait, while the read was pending
        assert max(waits[3:]) < 0.05  # once the read timed out (abandoned, still hung): no wait at all
        assert store.reads == 2  # one abandoned read, no pile-up of threads
        store.release.set()
        await asyncio.sleep(0.05)
        now[0] = 100.0
        await state.get()  # stale answer, refresh in the background
        await state.wait_idle()
        now[0] = 100.1
        assert await state.get() == "v3.0"

    asyncio.run(scenario())


def test_the_first_read_waits_at_most_the_timeout_then_serves_the_default():
    store = SlowStore()
    store.release.clear()
    state = SharedState("active version", store.read, ttl=0.5, timeout=0.2)

    async def scenario() -> None:
        t0 = time.monotonic()
        assert await state.get() is None  # nothing known: the caller's default applies
        assert 0.15 < time.monotonic() - t0 < 1.0

    asyncio.run(scenario())
    store.release.set()


def test_the_event_loop_keeps_running_while_a_read_waits():
    store = SlowStore()
    store.release.clear()
    state = SharedState("active experiment", store.read, ttl=0.0, timeout=0.3)

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await state.get()
        task.cancel()
        return ticks

    assert asyncio.run(scenario()) >= 10  # ~30 ticks while the read blocked its thread
    store.release.set()


def test_failures_keep_the_last_value_and_are_retried_once_per_ttl():
    store, now = SlowStore(), [0.0]
    state = SharedState("active version", store.read, ttl=0.5, timeout=1.0, clock=lambda: now[0])

    async def scenario() -> None:
        assert await state.get() == "v3.1"
        store.fail, now[0] = True, 1.0
        assert await state.get() == "v3.1"  # the read failed: the last known value
        assert await state.get() == "v3.1" and store.reads == 2  # within the ttl: no new read
        state.put("v3.0")  # this worker wrote a new value
        assert await state.get() == "v3.0" and store.reads == 2
        store.fail = False
        state.expire()
        assert await state.get() == "v3.1" and store.reads == 3  # a healthy read is waited for: fresh at once

    asyncio.run(scenario())
