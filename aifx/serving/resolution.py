"""A covered bar's outcome from trusted candles only: entry and ATR14 recomputed, each version's result (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from aifx import instruments, outcomes, trade
from experiments import records
from experiments.evaluation import check_resolution

__all__ = ["Unresolvable", "resolutions", "resolve_bar", "trusted_facts"]


class Unresolvable(ValueError):
    """A covered bar whose outcome cannot be computed from trusted candles; the message says why."""


def trusted_facts(pair: str, pip: float, before: records.CandleSeries, bar_time: datetime) -> outcomes.BarFacts:
    """Entry (the bar's close) and ATR14 from the trusted candles up to and including the bar (pure)."""
    if not before.ts or before.ts[-1] != bar_time:
        raise Unresolvable("no trusted candle of the bar itself was stored")
    inst = instruments.Instrument(pair, pip)
    if not all(inst.plausible(x) for x in (*before.low, *before.high)):
        raise Unresolvable(f"a trusted candle before the bar is outside the band: {inst.describe_band()}")
    atr = outcomes.request_atr(np.asarray(before.high), np.asarray(before.low), np.asarray(before.close))
    if not math.isfinite(atr):
        raise Unresolvable(f"fewer than {outcomes.ATR_PERIOD + 1} trusted candles up to the bar: no ATR14")
    problem = instruments.atr_problem(atr, inst)
    if problem is not None:
        raise Unresolvable(problem)
    return outcomes.BarFacts(float(before.close[-1]), atr, pip)


def resolve_bar(
    bar: records.PendingBar, label_params: Mapping[str, Any], rule: trade.TradeRule
) -> tuple[list[records.Resolution], outcomes.BarFacts]:
    """What each logged version's decision on a covered bar earned, from trusted candles only (pure; the
    same functions as offline), with the entry and ATR14 it was scored with; Unresolvable or Invalid says why not."""
    if not bar.decisions:
        raise Unresolvable("no decision was logged on the bar")
    facts = trusted_facts(bar.pair, bar.pip, bar.before, bar.bar_time)
    decided = [(d.version, d.signal) for d in bar.decisions]
    rows = [
        records.Resolution(bar.id, o.version, o.result, o.pips, o.label)
        for o in outcomes.resolve(facts, decided, label_params, _bars(bar.before), _bars(bar.after), rule)
    ]
    for r in rows:
        check_resolution(r)  # bounded pips, a known result: else the bar is void, not its batch
    return rows, facts


def resolutions(
    bar: records.PendingBar, label_params: Mapping[str, Any], rule: trade.TradeRule
) -> list[records.Resolution]:
    """resolve_bar's outcomes alone."""
    return resolve_bar(bar, label_params, rule)[0]


def _bars(series: records.CandleSeries) -> outcomes.Bars:
    return outcomes.Bars(np.asarray(series.high), np.asarray(series.low), np.asarray(series.close))
