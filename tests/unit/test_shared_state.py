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


def test_a_hanging_database_costs_at_most_the_timeout_and_one_thread():
    store, now = SlowStore(), [0.0]
    state = SharedState("active version", store.read, ttl=0.5, timeout=0.2, clock=lambda: now[0])

    async def scenario() -> None:
        assert await state.get() == "v3.1"
        store.release.clear()  # the database stops answering
        store.value = "v3.0"
        now[0] = 1.0
        t0 = time.monotonic()
        assert await state.get() == "v3.1"  # the last known value, after the timeout
        assert 0.15 < time.monotonic() - t0 < 1.0
        now[0] = 2.0
        t0 = time.monotonic()
        assert await state.get() == "v3.1"  # the abandoned read still runs: no second thread, no wait
        assert time.monotonic() - t0 < 0.1 and store.reads == 2
        store.release.set()
        await asyncio.sleep(0.05)
        now[0] = 3.0
        assert await state.get() == "v3.0" and store.reads == 3

    asyncio.run(scenario())


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
    assert asyncio.run(state.get()) == "v3.1"
    store.fail, now[0] = True, 1.0
    assert asyncio.run(state.get()) == "v3.1" and store.reads == 2
    assert asyncio.run(state.get()) == "v3.1" and store.reads == 2
    state.put("v3.0")  # this worker wrote a new value
    assert asyncio.run(state.get()) == "v3.0" and store.reads == 2
    state.expire()
    assert asyncio.run(state.get()) == "v3.0" and store.reads == 3
