"""Signal events on SQLite and PostgreSQL: one per bar, ids that become visible in order (a follower reading
`id > the last it saw` misses no event while many workers publish at once), and SQLite's commit mark."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from aifx.serving.signal_hub import SignalHub
from experiments import ExperimentStore
from experiments.signals import SignalStore

pytest_plugins = ["tests.conftest_pg"]
T0 = datetime(2026, 1, 5, tzinfo=UTC)
PAIRS = ("EUR/USD", "GBP/USD", "USD/JPY", "AUD/USD", "USD/CAD", "EUR/GBP")


def test_the_first_event_of_a_bar_wins(store: ExperimentStore) -> None:
    signals = SignalStore(store)
    ids = signals.publish([("EUR/USD", "1h", T0, {"n": 1}), ("EUR/USD", "1h", T0 + timedelta(hours=1), {"n": 2})])
    assert len(ids) == 2 and ids == sorted(ids)
    assert signals.publish([("EUR/USD", "1h", T0, {"n": 3})]) == []
    assert [e["payload"]["n"] for e in signals.after("EUR/USD", "1h", 0)] == [1, 2]
    assert signals.latest("EUR/USD", "1h")["payload"] == {"n": 2} and signals.newest_id() == ids[-1]


def test_a_follower_misses_no_event_while_workers_publish_at_once(
    make_store: Callable[[], ExperimentStore],
) -> None:
    """Six workers (an engine each) publish 40 bars each, on series of their own, while a seventh follows the
    table as the hub does; an id allocated before another but committed after it must still be read."""
    follower = SignalStore(make_store())
    follower.newest_id()  # the schema exists before the race starts
    per_worker, seen, done = 40, [], threading.Event()

    def publish(pair: str) -> None:
        signals = SignalStore(make_store())
        for i in range(per_worker):
            signals.publish([(pair, "1h", T0 + timedelta(hours=i), {"i": i})])

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read before the query: a last pass after every commit
            page = follower.after(None, None, last)
            if page:
                seen.extend(e["id"] for e in page)
                last = page[-1]["id"]
            elif finished:
                return

    workers = [threading.Thread(target=publish, args=(p,)) for p in PAIRS]
    reader = threading.Thread(target=follow)
    reader.start()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    reader.join(timeout=60)
    stored = [e["id"] for e in follower.after(None, None, 0, limit=1_000)]
    assert len(stored) == per_worker * len(PAIRS)
    assert sorted(seen) == stored, f"the follower missed {sorted(set(stored) - set(seen))[:10]}"


@pytest.mark.parametrize("bars", [1, 3])
def test_publish_answers_the_ids_in_bar_order(store: ExperimentStore, bars: int) -> None:
    signals = SignalStore(store)
    events = [("USD/CHF", "4h", T0 + timedelta(hours=4 * i), {"i": i}) for i in reversed(range(bars))]
    ids = signals.publish(events)
    assert [e["payload"]["i"] for e in signals.after("USD/CHF", "4h", 0)] == list(range(bars)) and len(ids) == bars


def test_a_commit_of_another_worker_changes_the_mark_sqlite_workers_watch(
    make_store: Callable[[], ExperimentStore],
) -> None:
    watcher, writer = SignalStore(make_store()), SignalStore(make_store())
    writer.newest_id()
    before = watcher.change_mark()
    if not watcher.sqlite:
        assert before is None  # PostgreSQL wakes workers with NOTIFY instead
        return
    writer.publish([("EUR/USD", "1h", T0, {"n": 1})])
    assert before is not None and watcher.change_mark() != before


def test_a_hub_on_sqlite_hands_over_another_workers_event_without_waiting_for_its_poll(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = SignalHub(SignalStore(ExperimentStore(url)), 8, 8, poll_s=30.0)
    other = SignalStore(ExperimentStore(url))

    async def run() -> float:
        task = asyncio.create_task(hub.run())
        sub = hub.subscribe("EUR/USD", "1h", "test")
        while hub.last_id is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        start = time.perf_counter()
        await asyncio.to_thread(other.publish, [("EUR/USD", "1h", T0, {"n": 1})])
        async with asyncio.timeout(5):
            event = await sub.queue.get()
        task.cancel()
        assert event is not None and event["payload"] == {"n": 1}
        return time.perf_counter() - start

    assert asyncio.run(run()) < 1.0  # the poll would take 30 s
