"""`make bench` lines of the signal engine (issue 30), run against the benchmark's service.

- publish latency: a backend posts closed bars one by one (POST /reversal/candles); each bar's signal
  event reaches a subscriber of GET /reversal/signals/stream. Figures are from the POST's answer to the
  event's arrival (negative when the event came first) over every bar.
- predict without data: POST /reversal/predict with only pair, timeframe and bar_time, answered from the
  trusted candles the service stores, every request about a different stored bar, at concurrency 64.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from aifx_client import AsyncAIFXClient
from bench.loadgen import RunResult, run_load
from bench.payloads import bundled_candles

# Pairs no other run stores candles of; the latency line's bars are the hourly data re-timed 15 minutes
# apart, so that every one of them is recent enough to be scored.
LATENCY_PAIR, STORED_PAIR, TIMEFRAME, LATENCY_TIMEFRAME = "USD/SGD", "EUR/USD", "1h", "15m"
HISTORY = 64  # candles posted at once before the bars posted one by one


def candle_rows(start: int, stop: int, step: timedelta | None = None) -> list[dict[str, object]]:
    """Candles[start:stop] of the bundled data as the API's JSON; with step, re-timed step apart and ending
    with the last closed bar (the service scores only bars within its outcome expiry, 168 h)."""
    c = bundled_candles()
    times = [t.replace(tzinfo=UTC) for t in c.timestamp[start:stop].astype("datetime64[s]").astype(datetime).tolist()]
    if step is not None:
        now = datetime.now(UTC).timestamp()
        last = datetime.fromtimestamp(now - now % step.total_seconds(), UTC) - step
        times = [last - step * (len(times) - 1 - i) for i in range(len(times))]
    prices = zip(*(getattr(c, k)[start:stop].tolist() for k in ("open", "high", "low", "close")), strict=True)
    return [{"timestamp": t.isoformat(), "open": o, "high": h, "low": lo, "close": cl}
            for t, (o, h, lo, cl) in zip(times, prices, strict=True)]  # fmt: skip


def publish_latency(base: str, scale: float) -> RunResult:
    """Bars posted one by one while a subscriber follows the stream: POST answer -> event, in ms."""
    bars = max(int(200 * scale), 20)
    total = len(bundled_candles())
    rows = candle_rows(total - HISTORY - bars, total, timedelta(minutes=15))
    answered: dict[datetime, float] = {}
    arrived: dict[datetime, float] = {}

    async def subscribe(after: int) -> None:
        async with AsyncAIFXClient(base, timeout=30) as client:
            async with contextlib.aclosing(
                client.signals(LATENCY_PAIR, LATENCY_TIMEFRAME, last_event_id=after)
            ) as events:
                async for event in events:
                    arrived[event.bar_time] = time.perf_counter()
                    if len(arrived) == bars:
                        return

    async def run() -> float:
        async with AsyncAIFXClient(base, timeout=60) as client:
            await client.post_candles(LATENCY_PAIR, LATENCY_TIMEFRAME, rows[:HISTORY])
            latest = await client.latest_signal(LATENCY_PAIR, LATENCY_TIMEFRAME)
            reader = asyncio.create_task(subscribe(latest.id if latest is not None else 0))
            await asyncio.sleep(0.5)  # the subscription is in place before the first bar
            start = time.perf_counter()
            for row in rows[HISTORY:]:
                await client.post_candles(LATENCY_PAIR, LATENCY_TIMEFRAME, [row])
                answered[datetime.fromisoformat(str(row["timestamp"]))] = time.perf_counter()
            seconds = time.perf_counter() - start
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 30)
            return seconds

    seconds = asyncio.run(run())
    ms = [(arrived[t] - answered[t]) * 1000 for t in answered if t in arrived]
    p50, p90, p99 = np.percentile(ms, [50, 90, 99]).tolist() if ms else (float("nan"),) * 3
    label = "signal event after POST /reversal/candles answered (ms from answer to event)"
    return RunResult(label, 1, bars, bars - len(ms), seconds, p50, p90, p99)


def predict_without_data(base: str, scale: float, concurrency: int = 64) -> RunResult:
    """Predictions from stored candles only (pair, timeframe, bar_time), a different stored bar each."""
    count = int(4000 * scale)
    rows = candle_rows(0, count + HISTORY)

    async def store() -> None:
        async with AsyncAIFXClient(base, timeout=120) as client:
            for i in range(0, len(rows), 1_000):
                await client.post_candles(STORED_PAIR, TIMEFRAME, rows[i : i + 1_000])

    asyncio.run(store())
    order = np.random.default_rng(64).permutation(np.arange(HISTORY, len(rows)))
    bodies = [{"pair": STORED_PAIR, "timeframe": TIMEFRAME, "bar_time": rows[i]["timestamp"]} for i in order.tolist()]
    return run_load(
        "predict without data (stored candles, a bar each)", f"{base}/reversal/predict", bodies, concurrency
    )
