"""Trusted candles (market_candles): the first stored candle of a (pair, timeframe, ts) wins.

A candle differing from the stored one by more than a tolerance (relative, per price) is a conflict, counted
and reported with its time. Mostly duplicates is the common case, so stored candles are read first and only
new ones are written.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from experiments import validation as v
from experiments.bulk import bulk_insert, bulk_params
from experiments.errors import Invalid
from experiments.records import Candle, CandleSeries, as_utc, iso, utcnow
from experiments.schema import market_candles

CANDLE_COLUMNS = ("pair", "timeframe", "ts", "open", "high", "low", "close", "source", "received_at")
Ohlc = tuple[float, float, float, float]


def check_candle(c: Candle) -> Candle:
    """A finite, positive, consistent OHLC candle with a UTC timestamp."""
    ts = v.check_time(c.ts, "candle ts")
    o, h, lo, cl = (v.check_positive(x, "candle price") for x in (c.open, c.high, c.low, c.close))
    if not (h >= lo and h >= o and h >= cl and lo <= o and lo <= cl):
        raise Invalid(f"candle at {iso(ts)}: high must be >= open, close, low and low <= open, close")
    return Candle(ts, o, h, lo, cl)


def dedupe(candles: list[Candle], tolerance: float) -> tuple[dict[datetime, Candle], dict[str, Any]]:
    """Candles by ts (the first of a repeated ts wins, repeats are counted) and fresh counts."""
    counts: dict[str, Any] = {
        "inserted": 0,
        "duplicates": 0,
        "conflicts": 0,
        "conflict_times": [],
        "inserted_times": [],
    }
    out: dict[datetime, Candle] = {}
    for c in candles:
        first = out.setdefault(c.ts, c)
        if first is not c:
            _count(counts, c.ts, _same(first, (c.open, c.high, c.low, c.close), tolerance))
    return out, counts


def stored(conn: Connection, pair: str, timeframe: str, times: list[datetime]) -> dict[datetime, Ohlc]:
    """Stored (open, high, low, close) by ts over the span of `times` (one primary-key range scan)."""
    mc = market_candles.c
    stmt = select(mc.ts, mc.open, mc.high, mc.low, mc.close).where(
        mc.pair == pair, mc.timeframe == timeframe, mc.ts >= min(times), mc.ts <= max(times)
    )
    return {as_utc(ts): (o, h, lo, c) for ts, o, h, lo, c in conn.execute(stmt)}


def compare(
    incoming: dict[datetime, Candle], stored: dict[datetime, Ohlc], tolerance: float, counts: dict[str, Any]
) -> list[Candle]:
    """Count incoming candles already stored (duplicate or conflict); return the new ones in ts order."""
    new = []
    for ts in sorted(incoming):
        old = stored.get(ts)
        if old is None:
            new.append(incoming[ts])
        else:
            _count(counts, ts, _same(incoming[ts], old, tolerance))
    return new


def insert(
    conn: Connection,
    key: tuple[str, str],
    new: list[Candle],
    source: str,
    tolerance: float,
    counts: dict[str, Any],
    sqlite: bool,
) -> None:
    """Insert new candles of key (pair, timeframe); those a concurrent writer stored first are compared with it."""
    (pair, timeframe), now = key, utcnow()
    rows = [
        {"pair": pair, "timeframe": timeframe, "ts": c.ts, "open": c.open, "high": c.high, "low": c.low,
         "close": c.close, "source": source, "received_at": now}
        for c in new
    ]  # fmt: skip
    inserted = conn.execute(_insert_candles(sqlite), bulk_params(rows, sqlite)).scalars()
    done = {as_utc(ts) for ts in inserted}
    counts["inserted"] += len(done)
    counts["inserted_times"] = sorted(done)
    raced = {c.ts: c for c in new if c.ts not in done}
    if raced:
        compare(raced, stored(conn, pair, timeframe, list(raced)), tolerance, counts)


def between(conn: Connection, pair: str, timeframe: str, first: datetime, last: datetime, before: int) -> CandleSeries:
    """Stored candles from the `before`-th at or before `first` through `last`, oldest first."""
    mc = market_candles.c
    low = lookback(pair, timeframe, first, max(1, before))
    stmt = select(mc.ts, mc.open, mc.high, mc.low, mc.close).where(
        mc.pair == pair, mc.timeframe == timeframe, mc.ts >= low, mc.ts <= last
    )
    columns = list(zip(*conn.execute(stmt.order_by(mc.ts)), strict=True)) or [(), (), (), (), ()]
    return CandleSeries(tuple(as_utc(t) for t in columns[0]), *(tuple(c) for c in columns[1:]))


def lookback(pair: str, timeframe: str, first: datetime, before: int) -> Any:
    """The time of the `before`-th stored candle at or before `first` (`first` when there is none)."""
    mc = market_candles.c
    key = (mc.pair == pair, mc.timeframe == timeframe)
    times = select(mc.ts).where(*key, mc.ts <= first).order_by(mc.ts.desc()).limit(before).subquery()
    return func.coalesce(select(func.min(times.c.ts)).scalar_subquery(), first)


def _same(c: Candle, old: Ohlc, tolerance: float) -> bool:
    """Whether every price agrees within the relative tolerance."""
    new = (c.open, c.high, c.low, c.close)
    return all(math.isclose(x, y, rel_tol=tolerance, abs_tol=0.0) for x, y in zip(new, old, strict=True))


def _count(counts: dict[str, Any], ts: datetime, same: bool) -> None:
    if same:
        counts["duplicates"] += 1
    else:
        counts["conflicts"] += 1
        counts["conflict_times"].append(ts)


@functools.cache
def _insert_candles(sqlite: bool) -> Any:
    """Insert candles, first wins; returns the ts of those inserted."""
    ins = bulk_insert(market_candles, CANDLE_COLUMNS, sqlite)
    return ins.on_conflict_do_nothing(index_elements=list(CANDLE_COLUMNS[:3])).returning(market_candles.c.ts)
