"""The outcome loop's rows: the bar a request is about, the rows queued for the evaluation log, the `live` block."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from aifx import instruments, metrics, outcomes, trade
from aifx import signal as sig
from aifx.candles import Candles
from aifx.serving.context import get_logger
from experiments import records

logger = get_logger("bentoml.aifx.outcomes")
HORIZON = trade.TradeRule().horizon_bars
# Trusted candles at and before a bar that its entry, ATR14 and labels are computed from (the 64 candles
# a client sends, README; v3.0 swing points look at 6).
LOOKBACK = 64


@dataclass(frozen=True, slots=True)
class CandleRows:
    """Trusted candles waiting for the write-behind queue."""

    pair: str
    timeframe: str
    candles: tuple[records.Candle, ...]
    source: str


@dataclass(frozen=True, slots=True)
class Bar:
    """The bar a request is about: its key, the facts of its candles, and why it may not be logged (or None)."""

    pair: str
    timeframe: str
    time: datetime
    facts: outcomes.BarFacts
    problem: str | None = None

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.pair, self.timeframe, self.time)


def bar_at(
    pair: str, timeframe: str, candles: Candles, pip_sizes: Mapping[str, float], expiry: timedelta, now: datetime
) -> Bar | None:
    """The bar the candles end at with its entry, ATR14 and pip, or None when it has no trade levels (a pair not
    in the instrument table, a timeframe that is none, prices outside the instrument's band, ATR14 too small)."""
    inst = instruments.instrument(pair, pip_sizes)
    tf = instruments.canonical_timeframe(timeframe)
    if inst is None or tf is None or not len(candles.close):
        return None
    if not (inst.plausible(float(candles.low.min())) and inst.plausible(float(candles.high.max()))):
        return None
    facts = outcomes.bar_facts(inst.name, candles.high, candles.low, candles.close, {inst.name: inst.pip})
    if facts is None or instruments.atr_problem(facts.atr, inst) is not None:
        return None
    stamp = last_time(candles.timestamp)
    return Bar(inst.name, tf, stamp, facts, instruments.bar_problem(stamp, tf, now, expiry))


def bars_at(
    asked: Sequence[tuple[str, str, Candles]], pip_sizes: Mapping[str, float], expiry: timedelta, now: datetime
) -> list[Bar | None]:
    """bar_at of many requests (pair, timeframe, candles): the instrument and timeframe once per pair and
    timeframe, the price band, entry, ATR14 checks and bar times as arrays; the same bars as bar_at one by one."""
    out: list[Bar | None] = [None] * len(asked)
    groups: dict[tuple[str, str, int], list[int]] = {}
    for i, (pair, timeframe, candles) in enumerate(asked):
        groups.setdefault((pair, timeframe, len(candles.close)), []).append(i)
    for (pair, timeframe, n), members in groups.items():
        sets = [asked[i][2] for i in members]
        if n <= outcomes.ATR_PERIOD or any(c.timestamp.dtype != _NS for c in sets):
            # too few candles for ATR14 (no bar), or times not as requests hold them: one by one
            for i in members:
                out[i] = bar_at(*asked[i], pip_sizes, expiry, now)
            continue
        for i, bar in zip(members, _group_bars(pair, timeframe, sets, pip_sizes, expiry, now), strict=True):
            out[i] = bar
    return out


def _group_bars(
    pair: str, timeframe: str, sets: list[Candles], pip_sizes: Mapping[str, float], expiry: timedelta, now: datetime
) -> list[Bar | None]:
    """bars_at of candle sets of one pair, timeframe and length (more than ATR_PERIOD candles, times in ns)."""
    inst = instruments.instrument(pair, pip_sizes)
    tf = instruments.canonical_timeframe(timeframe)
    if inst is None or tf is None:
        return [None] * len(sets)
    try:
        pip = trade.pip_size(inst.name, {inst.name: inst.pip})  # as bar_facts asks it
    except trade.UnknownPair:
        return [None] * len(sets)
    high, low, close = (np.concatenate([getattr(c, f) for c in sets]).reshape(len(sets), -1) for f in PRICES)
    keep = _in_band(low.min(axis=1), inst) & _in_band(high.max(axis=1), inst)
    atr = np.full(len(sets), np.nan)
    for j in np.flatnonzero(keep).tolist():
        atr[j] = outcomes.request_atr(high[j], low[j], close[j])
    entry = close[:, -1]
    with np.errstate(invalid="ignore"):  # NaN ATR (a set out of the band) compares False: no bar
        keep &= np.isfinite(atr) & (atr > 0) & np.isfinite(entry) & (entry > 0)
        keep &= (np.abs(atr) >= sys.float_info.min) & (atr / inst.pip >= instruments.MIN_ATR_PIPS)  # atr_problem
    micros = np.fromiter((c.timestamp.view(np.int64)[-1] for c in sets), np.int64, len(sets)) // 1000
    seconds = instruments.timeframe_seconds(tf) or 0
    now_us = (now - _EPOCH) // _US
    # bar_problem's checks in whole microseconds; a set that fails one gets bar_problem's own message
    fine = (micros % (instruments.grid_seconds(seconds) * 1_000_000) == 0) & (micros <= now_us + seconds * 1_000_000)
    fine &= micros >= now_us - expiry // _US
    out: list[Bar | None] = []
    for j, (ok, us, good) in enumerate(zip(keep.tolist(), micros.tolist(), fine.tolist(), strict=True)):
        if not ok:
            out.append(None)
            continue
        stamp = _EPOCH + timedelta(microseconds=us)
        problem = None if good else instruments.bar_problem(stamp, tf, now, expiry)
        out.append(Bar(inst.name, tf, stamp, outcomes.BarFacts(float(entry[j]), float(atr[j]), pip), problem))
    return out


def _in_band(prices: np.ndarray, inst: instruments.Instrument) -> np.ndarray:
    """Instrument.plausible of each price: a normal, finite float inside the instrument's band."""
    with np.errstate(invalid="ignore"):
        normal = np.isfinite(prices) & (np.abs(prices) >= sys.float_info.min)
        return normal & (prices >= inst.low) & (prices <= inst.high)


def last_time(stamps: np.ndarray) -> datetime:
    """The last of the candle times as an aware UTC datetime (to the microsecond)."""
    if stamps.dtype == _NS:  # as the request's candles hold them: integer arithmetic, no numpy casts (~3 us less)
        return _EPOCH + timedelta(microseconds=int(stamps.view(np.int64)[-1]) // 1000)
    return stamps[-1].astype("datetime64[us]").astype(datetime).replace(tzinfo=UTC)


_NS = np.dtype("datetime64[ns]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
PRICES = ("high", "low", "close")


def queued_bytes(row: records.BarLog | CandleRows) -> int:
    """A queued row's memory, estimated: ~136 bytes per trusted candle (measured: 1,000 candles ~136 KB),
    ~400 per bar and ~200 per decision on it."""
    if isinstance(row, CandleRows):
        return 200 + 136 * len(row.candles)
    return 400 + 200 * len(row.decisions)


LIVE_FIELDS = ("resolved", "pending", "expired", "void", "signals", "hit_rate", "mean_pips", "stage1_precision",
               "stage1_recall", "brier", "labelled")  # fmt: skip


def live_block(figures: Mapping[str, Any], filters: dict[str, str | None]) -> dict[str, Any]:
    """The `live` block of a model from the store's figures."""
    return {**{k: figures.get(k) for k in LIVE_FIELDS}, "filters": filters}


def bar_log(bar: Bar, decisions: Sequence[tuple[str, sig.Decision, int]]) -> records.BarLog:
    """The row of a bar and the decisions made on it: (version, decision, served 1 or shadow 0), plus the
    naive baselines (outcomes.BASELINES: always long, always short, always hold)."""
    rows = tuple(records.Decision(v, d.signal, d.stage1_prob, d.stage2_prob, served) for v, d, served in decisions)
    rows += tuple(
        records.Decision(name, signal, 0.0 if signal == "hold" else 1.0, _BASELINE_P_LONG.get(signal), 0)
        for name, signal in outcomes.BASELINES.items()
    )
    f = bar.facts
    return records.BarLog(bar.pair, bar.timeframe, bar.time, f.entry, f.atr, f.pip, rows)


_BASELINE_P_LONG = {"long": 1.0, "short": 0.0}


def pair_filter(pair: str | None) -> str | None:
    """A pair query filter in the log's spelling (UnknownPair for text that is no currency pair: a 422)."""
    return trade.normalise_pair(pair) if pair else None


def to_records(candles: Candles) -> tuple[records.Candle, ...]:
    """Candle arrays as the store's records (UTC times)."""
    times = candles.timestamp.astype("datetime64[us]").astype(datetime)
    return tuple(
        records.Candle(t.replace(tzinfo=UTC), float(o), float(h), float(lo), float(c))
        for t, o, h, lo, c in zip(times, candles.open, candles.high, candles.low, candles.close, strict=True)
    )


def candle_groups(rows: list[CandleRows]) -> list[tuple[str, str, list[records.Candle], str]]:
    """Queued candle rows merged per (pair, timeframe, source), each candle once (the first queued wins)."""
    groups: dict[tuple[str, str, str], dict[datetime, records.Candle]] = {}
    for r in rows:
        seen = groups.setdefault((r.pair, r.timeframe, r.source), {})
        for c in r.candles:
            seen.setdefault(c.ts, c)
    return [(pair, tf, sorted(c.values(), key=lambda c: c.ts), src) for (pair, tf, src), c in groups.items()]


def count_conflicts(pair: str, timeframe: str, counts: Mapping[str, Any]) -> None:
    """Count and log trusted candles that conflicted with stored ones (the first stored wins)."""
    conflicts = int(counts.get("conflicts", 0))
    if conflicts:
        metrics.CANDLE_CONFLICTS.inc(conflicts)
        times = ", ".join(str(t) for t in list(counts.get("conflict_times", []))[:3])
        logger.warning("candles of %s %s conflict with stored ones (first wins): %d at %s",
                       pair, timeframe, conflicts, times)  # fmt: skip
