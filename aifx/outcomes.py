"""What a logged bar earned: each version's trade result and whether its own Stage 1 label held.

Pure: the entry, ATR14 and pip stored with the bar and the candles after it (from trusted
sources) are all it takes, so an outcome is reproducible from what was stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aifx import trade
from aifx.labels import BarrierParams, SwingParams, wilder_atr

ATR_PERIOD = 14
# Naive baselines logged on every bar beside the versions, resolved by the same trade rule: a version is
# worth serving only if it beats always trading one way, and doing nothing (0 R), on the same bars.
BASELINES = {"baseline:long": trade.LONG, "baseline:short": trade.SHORT, "baseline:hold": "hold"}


@dataclass(frozen=True)
class BarFacts:
    """What is stored with a bar at prediction time: entry (last close), ATR14 of the request's candles, pip."""

    entry: float
    atr: float
    pip: float


@dataclass(frozen=True)
class Bars:
    """OHLC of consecutive bars, oldest first."""

    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return len(self.close)


@dataclass(frozen=True)
class Outcome:
    """One version's result on a bar: the trade of its signal (None for a hold) and its realized Stage 1 label."""

    version: str
    result: str | None
    pips: float | None
    label: bool | None


def request_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> float:
    """Wilder's ATR14 at the last of the request's candles (NaN with fewer than 15 candles)."""
    if len(close) <= ATR_PERIOD:
        return math.nan
    return float(wilder_atr(high, low, close, ATR_PERIOD)[-1])


def bar_facts(
    pair: str, high: np.ndarray, low: np.ndarray, close: np.ndarray, extra: Mapping[str, float] | None = None
) -> BarFacts | None:
    """The facts of the request's last bar, or None (unknown pair, too few candles for ATR14, flat prices)."""
    try:
        pip = trade.pip_size(pair, extra)
    except trade.UnknownPair:
        return None
    atr = request_atr(high, low, close)
    entry = float(close[-1])
    if not (math.isfinite(atr) and atr > 0 and math.isfinite(entry) and entry > 0):
        return None
    return BarFacts(entry, atr, pip)


def trade_levels(signal: str, facts: BarFacts, rule: trade.TradeRule) -> trade.TradeLevels | None:
    """The levels a long or short signal trades (None for a hold)."""
    if signal not in trade.SIDES:
        return None
    return trade.levels(facts.entry, facts.atr, signal, facts.pip, rule)


def resolve(
    facts: BarFacts,
    decisions: Sequence[tuple[str, str]],
    label_params: Mapping[str, Mapping[str, Any]],
    before: Bars,
    after: Bars,
    rule: trade.TradeRule,
) -> list[Outcome]:
    """Each (version, signal)'s outcome; before ends with the bar itself, after holds the bars that follow."""
    out = []
    for version, signal in decisions:
        result, pips = _trade(signal, facts, after, rule)
        out.append(Outcome(version, result, pips, stage1_label(label_params.get(version, {}), facts, before, after)))
    return out


def _trade(signal: str, facts: BarFacts, after: Bars, rule: trade.TradeRule) -> tuple[str | None, float | None]:
    if signal not in trade.SIDES:
        return None, None
    r = trade.resolve(signal, facts.entry, facts.atr, after.high, after.low, after.close, facts.pip, rule)
    return r.result, r.pips


def stage1_label(params: Mapping[str, Any], facts: BarFacts, before: Bars, after: Bars) -> bool | None:
    """The version's own Stage 1 label on this bar, from its label scheme (None when undefined here)."""
    scheme = params.get("scheme")
    fields = {k: v for k, v in params.items() if k != "scheme"}
    if scheme == "triple_barrier":
        return _barrier_label(BarrierParams(**fields), facts, after)
    if scheme == "swing_point":
        return _swing_label(SwingParams(**fields), before, after)
    return None


def _barrier_label(p: BarrierParams, facts: BarFacts, after: Bars) -> bool | None:
    """v3.1: a long or a short opened at the entry reaches its take profit first (the training label)."""
    if len(after) < p.horizon_bars:
        return None
    rule = p.trade_rule()
    sides = (
        trade.resolve(s, facts.entry, facts.atr, after.high, after.low, after.close, facts.pip, rule)
        for s in trade.SIDES
    )
    return any(r.result == trade.HIT for r in sides)


def _swing_label(p: SwingParams, before: Bars, after: Bars) -> bool | None:
    """v3.0: the bar's high beats the n bars on each side strictly, or its low does."""
    if len(before) < p.n + 1 or len(after) < p.n:
        return None
    high, low = before.high[-1], before.low[-1]
    hood_h = np.concatenate([before.high[-p.n - 1 : -1], after.high[: p.n]])
    hood_l = np.concatenate([before.low[-p.n - 1 : -1], after.low[: p.n]])
    return bool(high > hood_h.max() or low < hood_l.min())
