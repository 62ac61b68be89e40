"""The outcome loop's rows: the bar a request is about, the rows queued for the evaluation log, the `live` block."""

from __future__ import annotations

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


def last_time(stamps: np.ndarray) -> datetime:
    """The last of the candle times as an aware UTC datetime (to the microsecond)."""
    if stamps.dtype == _NS:  # as the request's candles hold them: integer arithmetic, no numpy casts (~3 us less)
        return _EPOCH + timedelta(microseconds=int(stamps.view(np.int64)[-1]) // 1000)
    return stamps[-1].astype("datetime64[us]").astype(datetime).replace(tzinfo=UTC)


_NS = np.dtype("datetime64[ns]")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
