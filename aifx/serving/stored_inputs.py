"""Candles from the service's own trusted store: a predict without `data`, and the seed's 20+ candles topped up.

The trading backend posts each closed candle (POST /reversal/candles); the service can then answer a
request that names only the pair and timeframe (the latest closed bar, or `bar_time`) from those
candles, and a request with fewer candles than a version needs from the stored history, when the
request's candles are the stored ones (same timestamps, prices equal within AIFX_CANDLE_TOLERANCE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from aifx import instruments
from aifx.candles import Candles
from aifx.serving.errors import BadCandles
from aifx.serving.log_rows import LOOKBACK
from aifx.serving.outcome_log import OutcomeLog
from experiments import records

STALE_GRACE = timedelta(seconds=60)  # a backend posts a closed candle within this after the bar closes


async def request_candles(log: OutcomeLog | None, pair: str, timeframe: str, candles: Candles | None,
                          bar_time: datetime | None, need: int) -> Candles | None:  # fmt: skip
    """The candles a request is answered from: its own, topped up from the store, or the store's alone.

    candles None means the request sent no `data` (and no `features`): answer from the store.
    """
    if candles is not None:
        return await _topped_up(log, pair, timeframe, candles, need)
    if log is None:
        raise BadCandles("data: no candles sent and the outcome loop is off (AIFX_OUTCOMES=false): send `data`")
    inst, tf = _series_of(log, pair, timeframe)
    last = bar_time or datetime.now(UTC)
    series = await log.history(inst, tf, last, last, max(need, LOOKBACK))
    where = f"{inst} {tf}"
    if bar_time is not None and (not series.ts or series.ts[-1] != bar_time):
        before = f"; the latest stored before it is at {series.ts[-1].isoformat()}" if series.ts else ""
        raise BadCandles(f"bar_time: no stored candle of {where} at {bar_time.isoformat()}{before}")
    if not series.ts:
        raise BadCandles(f"data: no candles sent and none stored for {where}: send `data`, or post closed candles "
                         "to /reversal/candles first")  # fmt: skip
    seconds = instruments.timeframe_seconds(tf) or 0
    if bar_time is None and datetime.now(UTC) - series.ts[-1] > timedelta(seconds=2 * seconds) + STALE_GRACE:
        raise BadCandles(f"data: the latest stored candle of {where} opened at {series.ts[-1].isoformat()}, more than "
                         "one bar before the latest closed bar: post the closed candles since then to "
                         "/reversal/candles, or send `data`")  # fmt: skip
    if len(series.ts) < need:
        raise BadCandles(f"data: {len(series.ts)} stored candles of {where} up to {series.ts[-1].isoformat()}, "
                         f"{need} needed: post the earlier candles to /reversal/candles, or send `data`")  # fmt: skip
    return as_candles(series)


async def _topped_up(log: OutcomeLog | None, pair: str, timeframe: str, candles: Candles, need: int) -> Candles:
    """Short candles with the stored history before them when the stored candles line up; else as sent."""
    if log is None or len(candles) >= need or not len(candles):
        return candles
    inst = instruments.instrument(pair, log.settings.pip_sizes)
    tf = instruments.canonical_timeframe(timeframe)
    if inst is None or tf is None:
        return candles
    stamps = _utc(candles.timestamp)
    size = max(need, LOOKBACK)  # what a full request sends: its trade levels' ATR14 is over the same candles
    series = await log.history(inst.name, tf, stamps[0], stamps[-1], size)
    stored = as_candles(series)
    if len(stored) < need or not _lines_up(stored, candles, stamps, series.ts, log.settings.candle_tolerance):
        return candles
    return stored.tail(size)


def _lines_up(stored: Candles, sent: Candles, stamps: Sequence[datetime], stored_ts: Sequence[datetime],
              tolerance: float) -> bool:  # fmt: skip
    """The sent candles are the last stored ones: the same timestamps in a row, prices equal within tolerance."""
    tail = list(stored_ts[-len(stamps) :])
    if tail != list(stamps):
        return False
    n = len(stamps)
    for column in ("open", "high", "low", "close"):
        got, want = getattr(sent, column), getattr(stored, column)[-n:]
        if not all(math.isclose(x, y, rel_tol=tolerance, abs_tol=0.0) for x, y in zip(got, want, strict=True)):
            return False
    return True


def _series_of(log: OutcomeLog, pair: str, timeframe: str) -> tuple[str, str]:
    """The canonical pair and timeframe of a request without candles (422 for what the store cannot hold)."""
    inst = instruments.instrument(pair, log.settings.pip_sizes)
    if inst is None:
        raise BadCandles(f"pair: {pair!r:.40} is not in the instrument table, so no candles of it are stored: "
                         "send `data`")  # fmt: skip
    tf = instruments.canonical_timeframe(timeframe)
    if tf is None:
        raise BadCandles(f"timeframe: {timeframe!r:.20} is not a timeframe such as 1m, 15m, 1h, 4h, 1d or 1w")
    return inst.name, tf


def as_candles(series: records.CandleSeries) -> Candles:
    """Stored candles as the arrays features are computed from."""
    ts = np.array([t.replace(tzinfo=None) for t in series.ts], dtype="datetime64[ns]")
    prices = (np.asarray(c, dtype=np.float64) for c in (series.open, series.high, series.low, series.close))
    return Candles(ts, *prices)


def _utc(timestamps: np.ndarray) -> list[datetime]:
    return [t.replace(tzinfo=UTC) for t in timestamps.astype("datetime64[us]").astype(datetime)]
