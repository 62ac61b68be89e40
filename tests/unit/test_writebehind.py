"""The write-behind queue: nothing lost on close, drops counted, producers never wait."""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter

import pytest

from experiments.writebehind import WriteBehind

pytestmark = pytest.mark.unit


class Sink:
    """A write_batch that records batches (optionally slow or failing) and an on_drop counter."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.rows: list[int] = []
        self.batches: list[int] = []
        self.drops: Counter[str] = Counter()
        self.delay_s, self.fail = delay_s, fail
        self.lock = threading.Lock()

    def write(self, batch: list[int]) -> None:
        time.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("database unreachable")
        with self.lock:
            self.rows.extend(batch)
            self.batches.append(len(batch))

    def drop(self, reason: str, n: int) -> None:
        with self.lock:
            self.drops[reason] += n


def test_nothing_is_lost_on_close_under_a_concurrent_producer() -> None:
    sink = Sink(delay_s=0.002)
    wb: WriteBehind[int] = WriteBehind(
        sink.write, capacity=1_000_000, flush_every_s=0.01, max_batch=500, on_drop=sink.drop
    )
    accepted: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        i = 0
        while not stop.is_set():
            if wb.put(i):
                accepted.append(i)
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)  # a realistic rate: a few batches queued when close() comes

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.3)
    assert wb.close(timeout=30) is True  # closes while the producer is still putting
    stop.set()
    producer.join()
    assert len(accepted) > 1000
    assert sorted(sink.rows) == accepted  # every accepted row written exactly once, in order
    assert sink.rows == accepted
    assert max(sink.batches) <= 500
    assert sink.drops["closed"] > 0 and set(sink.drops) == {"closed"}  # only puts after close
    assert wb.pending() == 0


def test_rows_are_written_within_the_flush_interval_without_close() -> None:
    sink = Sink()
    wb: WriteBehind[int] = WriteBehind(sink.write, flush_every_s=0.05)
    for i in range(10):
        wb.put(i)
    deadline = time.monotonic() + 2
    while len(sink.rows) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.rows == list(range(10))
    assert time.monotonic() < deadline - 1.5  # well under a second (the SIGKILL bound)
    wb.close()


def test_a_failing_writer_drops_and_counts_and_keeps_going() -> None:
    sink = Sink(fail=True)
    wb: WriteBehind[int] = WriteBehind(sink.write, flush_every_s=0.01, max_batch=100, on_drop=sink.drop)
    for i in range(250):
        assert wb.put(i)
    wb.flush()
    assert sink.drops == Counter(database=250) and sink.rows == []
    sink.fail = False  # the database is back: the thread still runs and writes new rows
    wb.put(1000)
    assert wb.close() is True
    assert sink.rows == [1000]


def test_a_full_queue_drops_and_counts() -> None:
    sink = Sink()
    writing, release = threading.Event(), threading.Event()

    def blocked_write(batch: list[int]) -> None:
        writing.set()
        release.wait(5)
        sink.write(batch)

    wb: WriteBehind[int] = WriteBehind(blocked_write, capacity=10, flush_every_s=0.01, on_drop=sink.drop)
    wb.put(-1)
    assert writing.wait(2)  # the thread holds row -1 in a write; the queue itself is empty
    results = [wb.put(i) for i in range(25)]
    assert results.count(True) == 10 and results.count(False) == 15
    assert sink.drops == Counter(full=15) and wb.pending() == 11
    release.set()
    assert wb.close() is True
    assert sink.rows == [-1, *range(10)]


def test_put_never_waits_for_a_slow_write() -> None:
    sink = Sink(delay_s=1.0)
    wb: WriteBehind[int] = WriteBehind(sink.write, capacity=50_000, flush_every_s=0.01, max_batch=100)
    wb.put(-1)
    time.sleep(0.05)  # the thread is now inside a 1 s write
    started = time.perf_counter()
    assert all(wb.put(i) for i in range(10_000))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    assert wb.pending() >= 10_000
    sink.delay_s = 0.0  # the rest is written quickly
    assert wb.close(timeout=5) is True
    assert len(sink.rows) == 10_001


def test_put_from_many_threads_counts_exactly() -> None:
    sink = Sink()
    wb: WriteBehind[int] = WriteBehind(sink.write, flush_every_s=0.005, max_batch=64)
    threads = [threading.Thread(target=lambda k=k: [wb.put(k * 10_000 + i) for i in range(2_000)]) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wb.close() is True
    assert sorted(sink.rows) == sorted(k * 10_000 + i for k in range(8) for i in range(2_000))


def test_a_broken_drop_counter_does_not_break_put() -> None:
    def broken(reason: str, n: int) -> None:
        raise RuntimeError("counter broke")

    wb: WriteBehind[int] = WriteBehind(lambda b: None, capacity=1, on_drop=broken)
    wb.close()
    assert wb.put(1) is False  # closed: dropped, the failing counter swallowed


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        WriteBehind(lambda b: None, capacity=0)


def test_put_from_an_event_loop() -> None:
    import asyncio

    sink = Sink()
    wb: WriteBehind[int] = WriteBehind(sink.write, flush_every_s=0.01)

    async def serve() -> None:
        for i in range(1000):
            assert wb.put(i)
            if i % 100 == 0:
                await asyncio.sleep(0)

    asyncio.run(serve())
    assert wb.close() is True and sink.rows == list(range(1000))


def test_the_queue_is_bounded_in_bytes_whatever_the_row_count() -> None:
    """Issue 29: a slow database cannot make the queue gigabytes: a row over the byte bound is dropped."""
    gate = threading.Event()
    sink = Sink()
    writer = WriteBehind(
        lambda batch: (gate.wait(5), sink.write(batch)),
        capacity=1_000_000,
        flush_every_s=0.01,
        on_drop=sink.drop,
        max_bytes=1_000_000,
        size_of=lambda row: 136_000,  # one trusted predict of 1,000 candles
    )
    accepted = [writer.put(i) for i in range(100)]
    assert accepted.count(True) == 7 and sink.drops["full"] == 93  # 7 x 136 KB fit in 1 MB
    assert writer.pending_bytes() <= 1_000_000
    gate.set()
    assert writer.close() and sorted(sink.rows) == list(range(7))
    assert writer.pending_bytes() == 0


def test_sigkill_loses_what_is_pending_and_no_more() -> None:
    """What a SIGKILL would lose at any instant is pending(): with a database that keeps up, about the rows of
    the last flush interval (0.25 s) and the batch being written; with a slow one, far more (up to the bound)."""

    def worst_and_windows(sink: Sink) -> tuple[int, int, int]:
        writer = WriteBehind(sink.write, capacity=100_000, flush_every_s=0.25, max_batch=100_000)
        worst, times = 0, []
        started = time.monotonic()
        while time.monotonic() - started < 1.5:
            writer.put(len(times))
            times.append(time.monotonic())
            worst = max(worst, writer.pending())
            time.sleep(0.0005)
        writer.close()
        # rows put within 0.3 s (one flush interval plus a fast write): the most, and the typical (median)
        # number; the put rate varies with the machine's load, so a bound above uses the first, one below the second
        starts = [i for i in range(0, len(times), 25) if times[i] + 0.3 <= times[-1]]  # whole windows only
        windows = sorted(bisect.bisect_right(times, times[i] + 0.3) - i for i in starts)
        return worst, windows[-1], windows[len(windows) // 2]

    fast_worst, fast_most, _ = worst_and_windows(Sink())
    slow_worst, _, slow_typical = worst_and_windows(Sink(delay_s=1.0))
    assert fast_worst <= 2 * fast_most, (fast_worst, fast_most)
    assert slow_worst > 3 * slow_typical, (slow_worst, slow_typical)  # a slow database: far more than 0.25 s
