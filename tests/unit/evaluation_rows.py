"""Shared by the evaluation-log store tests: the bar times, rows of bars and decisions, and a reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from experiments import BarLog, Candle, Decision, ExperimentStore
from experiments.records import as_utc
from experiments.schema import eval_bars, eval_decisions

T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)


def bar(i: int, *decisions: Decision, pair: str = "EURUSD", tf: str = "1h", entry: float = 1.1) -> BarLog:
    return BarLog(pair, tf, T0 + i * H, entry, 0.001, 0.0001, decisions)


def dec(version: str = "v3.1", signal: str = "long", p: float = 0.7, served: int = 0) -> Decision:
    return Decision(version, signal, p, 0.6 if signal != "hold" else None, served)


def candle(ts: datetime, close: float = 1.1) -> Candle:
    return Candle(ts, close, close + 0.001, close - 0.001, close)


def decisions_of(store: ExperimentStore) -> dict[tuple[datetime, str], Any]:
    """{(bar_time, version): row} of every stored decision, joined with its bar."""
    stmt = select(eval_bars, eval_decisions).join(eval_decisions, eval_decisions.c.bar_id == eval_bars.c.id)
    with store.engine.connect() as conn:
        return {(as_utc(r.bar_time), r.version): r for r in conn.execute(stmt)}
