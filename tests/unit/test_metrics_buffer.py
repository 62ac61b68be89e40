"""The metric buffer writes exactly what direct updates would have written, and writes it when it must."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aifx.metrics_buffer import MetricBuffer

pytestmark = pytest.mark.unit

BUCKETS = (0.05, 0.1, 0.5, 1.0, 2.5)
VALUES = st.one_of(
    st.floats(min_value=-1.0, max_value=5.0),
    st.sampled_from([*BUCKETS, 0.0, -0.0, math.inf, -math.inf, math.nan, 1e-300]),
)
# An update: (kind, series, value); kinds inc, observe and set, on two label values each.
UPDATES = st.lists(
    st.tuples(st.sampled_from(["inc", "observe", "set"]), st.sampled_from(["a", "b"]), VALUES), max_size=40
)


def series() -> tuple[CollectorRegistry, Counter, Histogram, Gauge]:
    """Fresh series (names of their own: under PROMETHEUS_MULTIPROC_DIR values live in the process's files)."""
    registry, name = CollectorRegistry(), f"t{next(_NAMES)}"
    return (
        registry,
        Counter(f"{name}_total", "t", ["k"], registry=registry),
        Histogram(f"{name}_seconds", "t", ["k"], buckets=BUCKETS, registry=registry),
        Gauge(f"{name}_gauge", "t", ["k"], registry=registry, multiprocess_mode="livesum"),
    )


_NAMES = itertools.count()


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for metric in registry.collect():
        for s in metric.samples:
            if not s.name.endswith("_created"):
                out[(s.name.split("_", 1)[1], tuple(sorted(s.labels.items())))] = s.value
    return out


def apply(updates, counter, histogram, gauge, buffer: MetricBuffer | None) -> None:
    for kind, key, value in updates:
        if kind == "inc":
            amount = abs(value) if math.isfinite(value) else 1.0  # counters only go up
            (buffer.inc(counter.labels(k=key), amount) if buffer else counter.labels(k=key).inc(amount))
        elif kind == "observe":
            (buffer.observe(histogram.labels(k=key), value) if buffer else histogram.labels(k=key).observe(value))
        else:
            (buffer.set(gauge.labels(k=key), value) if buffer else gauge.labels(k=key).set(value))


def value(registry: CollectorRegistry, counter: Counter) -> float | None:
    return registry.get_sample_value(f"{counter._name}_total", {"k": "a"})


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k]
        for k in a  # fresh series: the same additions
    )


@settings(max_examples=300, deadline=None)
@given(UPDATES)
def test_a_flushed_buffer_leaves_the_series_as_direct_updates_do(updates) -> None:
    direct, *three = series()
    apply(updates, *three, None)
    buffered, *others = series()
    buffer = MetricBuffer()

    async def request() -> None:
        buffer.begin()  # a request in flight: everything waits
        apply(updates, *others, buffer)
        if any(k == "observe" or (k == "inc" and v != 0) for k, _, v in updates):
            assert not same(samples(buffered), samples(direct))  # nothing written yet
        buffer.end()  # the last request ended: written

    asyncio.run(request())
    assert same(samples(buffered), samples(direct))


def test_updates_outside_a_request_or_from_another_thread_are_written_at_once() -> None:
    registry, counter, _, _ = series()
    buffer = MetricBuffer()

    async def requests() -> None:
        buffer.inc(counter.labels(k="a"))
        assert value(registry, counter) == 1.0
        buffer.begin()
        worker = threading.Thread(target=buffer.inc, args=(counter.labels(k="a"),))
        worker.start()
        worker.join()
        assert value(registry, counter) == 2.0
        buffer.inc(counter.labels(k="a"))  # the request's own thread: waits
        assert value(registry, counter) == 2.0
        buffer.begin()  # a second request
        buffer.end()  # one is still in flight: still waiting
        assert value(registry, counter) == 2.0
        buffer.end()
        assert value(registry, counter) == 3.0

    asyncio.run(requests())


def test_without_an_event_loop_nothing_waits() -> None:
    registry, counter, _, _ = series()
    buffer = MetricBuffer()
    buffer.begin()
    buffer.inc(counter.labels(k="a"))  # no loop to flush it later: written now
    assert value(registry, counter) == 1.0


def test_under_steady_load_updates_are_written_within_flush_s() -> None:
    registry, counter, _, _ = series()
    buffer = MetricBuffer(flush_s=0.05)

    async def steady() -> list[float | None]:
        buffer.begin()  # never idle during the test
        buffer.inc(counter.labels(k="a"))
        seen = [value(registry, counter)]
        await asyncio.sleep(0.2)
        seen.append(value(registry, counter))
        buffer.end()
        return seen

    assert asyncio.run(steady()) == [0.0, 1.0]
