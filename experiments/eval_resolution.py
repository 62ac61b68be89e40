"""Resolution of the evaluation log: covered pending bars with their decisions and candles, and outcomes written once.

Coverage: forex has no candles over weekends, so a bar counts as covered once at least `horizon` stored
candles of its pair and timeframe lie after bar_time, and its outcome uses the first `horizon` of them
whatever their spacing (their timestamps go to the caller, who may judge gaps). A bar changes state
through an UPDATE guarded by its state, so the first resolution wins.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, Row, Select, any_, bindparam, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY

from experiments import validation as v
from experiments.bulk import Values, bulk_params, chunks, json_rows
from experiments.errors import Invalid
from experiments.eval_candles import lookback
from experiments.records import CandleSeries, PendingBar, Resolution, StoredDecision, as_utc, utcnow
from experiments.schema import MAX_ABS_PIPS, RESULTS, eval_bars, eval_decisions, market_candles

SPAN_BARS = 5000  # at most this many steps of bar_time per candle query of pending()
RESULT_COLUMNS = ("bar_id", "version", "result", "pips", "label_held")


def pending(conn: Connection, step: timedelta, horizon: int, limit: int, before: int) -> list[PendingBar]:
    """Up to `limit` covered pending bars, oldest first per pair and timeframe, read in the caller's snapshot."""
    out: list[PendingBar] = []
    group = _next_group(conn, None)
    while group is not None and len(out) < limit:
        pair, timeframe = group
        group = _next_group(conn, group)
        covered = _covered_bars(pair, timeframe, horizon, limit - len(out))
        bars = conn.execute(covered).all()
        decisions = _decisions(conn, covered)  # the same bars: one snapshot, no list of ids
        out.extend(_with_candles(conn, pair, timeframe, bars, decisions, step, horizon, before))
    return out


def check_resolution(r: Resolution) -> dict[str, Any]:
    """The values of one outcome: result in RESULTS or None, bounded pips or None, bool or None."""
    if r.result is not None and r.result not in RESULTS:
        raise Invalid(f"result must be one of {', '.join(RESULTS)} or None (got {r.result!r:.40})")
    pips = None if r.pips is None else v.real(r.pips)
    if r.pips is not None and (pips is None or abs(pips) > MAX_ABS_PIPS):
        raise Invalid(f"pips must be a finite number between -{MAX_ABS_PIPS} and {MAX_ABS_PIPS} or None")
    if r.label_held is not None and not isinstance(r.label_held, bool):
        raise Invalid("label_held must be a bool or None")
    version = v.check_version(r.version, "version")
    return {"bar_id": int(r.bar_id), "version": version, "result": r.result, "pips": pips, "label_held": r.label_held}


def checked(
    results: Iterable[Resolution], facts: dict[int, tuple[float, float]] | None
) -> tuple[dict[int, list[Values]], dict[int, tuple[float, float]]]:
    """The outcomes by bar id and the trusted (entry, atr) by bar id, each checked."""
    by_bar: dict[int, list[Values]] = defaultdict(list)
    for r in results:
        params = check_resolution(r)
        by_bar[params["bar_id"]].append(params)
    if not by_bar:
        return by_bar, {}
    trusted = {i: (v.check_positive(e, "entry"), v.check_positive(a, "atr")) for i, (e, a) in (facts or {}).items()}
    return by_bar, trusted


def resolve(
    conn: Connection, by_bar: dict[int, list[Values]], trusted: dict[int, tuple[float, float]], sqlite: bool
) -> int:
    """Mark the pending bars among by_bar resolved with their outcomes and trusted facts; returns how many."""
    won: list[int] = []
    now = utcnow()
    for chunk in chunks(sorted(by_bar)) if sqlite else [sorted(by_bar)]:
        won.extend(conn.execute(_resolve_bars(sqlite), {"ids": chunk, "now": now}).scalars())
    rows = [p for bar_id in sorted(won) for p in sorted(by_bar[bar_id], key=lambda p: p["version"])]
    if rows:
        conn.execute(_result_update(sqlite), _result_params(rows, sqlite))
    facts = [{"bid": i, "t_entry": trusted[i][0], "t_atr": trusted[i][1]} for i in sorted(won) if i in trusted]
    if facts:
        b = eval_bars.c
        stmt = update(eval_bars).where(b.id == bindparam("bid")).values(entry=bindparam("t_entry"),
                                                                       atr=bindparam("t_atr"))  # fmt: skip
        conn.execute(stmt, facts)
    return len(won)


# -- pending bars -----------------------------------------------------------------------------------------


def _next_group(conn: Connection, after: tuple[str, str] | None) -> tuple[str, str] | None:
    """The first (pair, timeframe) with pending bars after `after`: one index probe (a loose scan)."""
    b = eval_bars.c
    stmt = select(b.pair, b.timeframe).where(b.state == "pending").order_by(b.pair, b.timeframe).limit(1)
    if after is not None:
        stmt = stmt.where(tuple_(b.pair, b.timeframe) > tuple_(*after))
    row = conn.execute(stmt).first()
    return None if row is None else (row.pair, row.timeframe)


def _covered_bars(pair: str, timeframe: str, horizon: int, limit: int) -> Select[Any]:
    """Pending bars with >= horizon later candles: bar_time before the horizon-th latest candle."""
    mc, b = market_candles.c, eval_bars.c
    nth_latest = (
        select(mc.ts)
        .where(mc.pair == pair, mc.timeframe == timeframe)
        .order_by(mc.ts.desc())
        .offset(horizon - 1)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(eval_bars)
        .where(b.state == "pending", b.pair == pair, b.timeframe == timeframe, b.bar_time < nth_latest)
        .order_by(b.bar_time)
        .limit(limit)
    )


def _with_candles(
    conn: Connection,
    pair: str,
    timeframe: str,
    bars: Sequence[Row[Any]],
    decisions: dict[int, tuple[StoredDecision, ...]],
    step: timedelta,
    horizon: int,
    before: int,
) -> list[PendingBar]:
    """PendingBars with their decisions and candles, one candle query per span of bars."""
    out: list[PendingBar] = []
    for span in _spans(bars, step * SPAN_BARS):
        first, last = as_utc(span[0].bar_time), as_utc(span[-1].bar_time)
        ts, ohlc = _candles_around(conn, pair, timeframe, first, last, horizon, before)
        for bar in span:
            bar_time = as_utc(bar.bar_time)
            i = bisect_right(ts, bar_time)
            if len(ts) - i < horizon:
                continue  # candles purged since the bar was found: not covered any more
            out.append(_pending_bar(bar, bar_time, decisions.get(bar.id, ()), _series(ts, ohlc, i, i + horizon),
                                    _series(ts, ohlc, max(0, i - before), i)))  # fmt: skip
    return out


def _spans(bars: Sequence[Row[Any]], max_span: timedelta) -> Iterator[list[Row[Any]]]:
    """Consecutive runs of bars (in bar_time order) no longer than max_span each."""
    span: list[Row[Any]] = []
    for bar in bars:
        if span and bar.bar_time - span[0].bar_time > max_span:
            yield span
            span = []
        span.append(bar)
    if span:
        yield span


def _candles_around(
    conn: Connection, pair: str, timeframe: str, first: datetime, last: datetime, horizon: int, before: int
) -> tuple[list[datetime], list[list[float]]]:
    """Stored candles as (ts, [open, high, low, close] columns), from the `before`-th at or before
    `first` to the `horizon`-th after `last`."""
    mc = market_candles.c
    key = (mc.pair == pair, mc.timeframe == timeframe)
    low = lookback(pair, timeframe, first, before)
    high = select(mc.ts).where(*key, mc.ts > last).order_by(mc.ts).offset(horizon - 1).limit(1).scalar_subquery()
    stmt = select(mc.ts, mc.open, mc.high, mc.low, mc.close).where(*key, mc.ts >= low, mc.ts <= high).order_by(mc.ts)
    columns = list(zip(*conn.execute(stmt), strict=True)) or [(), (), (), (), ()]
    return [as_utc(t) for t in columns[0]], [list(c) for c in columns[1:]]


def _series(ts: list[datetime], ohlc: list[list[float]], start: int, stop: int) -> CandleSeries:
    """Candles [start, stop) of the columns as a CandleSeries."""
    o, h, lo, c = (tuple(col[start:stop]) for col in ohlc)
    return CandleSeries(tuple(ts[start:stop]), o, h, lo, c)


def _pending_bar(
    bar: Row[Any], bar_time: datetime, decisions: tuple[StoredDecision, ...], after: CandleSeries, before: CandleSeries
) -> PendingBar:
    return PendingBar(
        int(bar.id), bar.pair, bar.timeframe, bar_time, bar.entry, bar.atr, bar.pip, as_utc(bar.created_at),
        decisions, after, before,
    )  # fmt: skip


def _decisions(conn: Connection, bars: Select[Any]) -> dict[int, tuple[StoredDecision, ...]]:
    """Stored decisions of the bars a query selects, by bar id, in version order."""
    sub = bars.subquery()
    d = eval_decisions.c
    stmt = select(eval_decisions).join(sub, d.bar_id == sub.c.id).order_by(d.bar_id, d.version)
    out: dict[int, list[StoredDecision]] = defaultdict(list)
    for r in conn.execute(stmt):
        out[r.bar_id].append(_stored_decision(r))
    return {k: tuple(ds) for k, ds in out.items()}


def _stored_decision(r: Row[Any]) -> StoredDecision:
    held = None if r.label_held is None else bool(r.label_held)
    return StoredDecision(r.version, r.signal, r.p_reversal, r.p_long, int(r.served), r.result, r.pips, held)


# -- outcomes (statements built once per dialect) -----------------------------------------------------------


@functools.cache
def _resolve_bars(sqlite: bool) -> Any:
    """Mark the pending bars among `ids` resolved at `now`; returns their ids."""
    ids = bindparam("ids", expanding=True) if sqlite else any_(bindparam("ids", type_=ARRAY(Integer)))
    chosen = eval_bars.c.id.in_(ids) if sqlite else eval_bars.c.id == ids
    return (
        update(eval_bars)
        .where(chosen, eval_bars.c.state == "pending")
        .values(state="resolved", resolved_at=bindparam("now"))
        .returning(eval_bars.c.id)
    )


@functools.cache
def _result_update(sqlite: bool) -> Any:
    """Write decisions' outcomes: executemany on SQLite, one UPDATE ... FROM the JSON rows on PostgreSQL."""
    d = eval_decisions.c
    if sqlite:
        return (
            update(eval_decisions)
            .where(d.bar_id == bindparam("b_bar_id"), d.version == bindparam("b_version"))
            .values(result=bindparam("b_result"), pips=bindparam("b_pips"), label_held=bindparam("b_label_held"))
        )
    r = json_rows(eval_decisions, RESULT_COLUMNS).c
    return (
        update(eval_decisions)
        .where(d.bar_id == r.bar_id, d.version == r.version)
        .values(result=r.result, pips=r.pips, label_held=r.label_held)
    )


def _result_params(rows: list[Values], sqlite: bool) -> Any:
    """The parameters of _result_update (SQLite's may not be named like the columns they set)."""
    return [{f"b_{k}": x for k, x in r.items()} for r in rows] if sqlite else bulk_params(rows, sqlite)
