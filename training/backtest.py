"""Cost-aware backtest of the two-stage signal, every trade resolved by the one trade rule (aifx.trade)."""

from __future__ import annotations

import numpy as np

from aifx.candles import Candles
from aifx.labels import BarrierParams, wilder_atr
from aifx.trade import HIT, LONG, SHORT, STOP, TIMEOUT, TradeResult, TradeRule, pip_size, resolve


def _pips(value: float) -> str:
    return f"{value:g} pip" + ("" if value == 1 else "s")


def rule_text(rule: TradeRule, atr_period: int = 14) -> str:
    """The trade rule in words, from its fields: the backtest's 'rule' line of docs/evaluation.md."""
    atr, n = f"ATR{atr_period}", rule.horizon_bars
    extra = f" + {_pips(rule.take_profit_extra_pips)}" if rule.take_profit_extra_pips else ""
    return (
        f"one unit trade per signal at Close[t] (aifx.trade): TP {float(rule.take_profit_atr)!r}x{atr}{extra}, "
        f"SL {float(rule.stop_loss_atr)!r}x{atr}, a bar touching both is SL, else close of bar t+{n}; "
        f"signals without {atr} or without {n} bars after them are skipped; "
        "positive_rate (hit_rate) = share of trades with net pips > 0, "
        "take_profit_rate = share of trades that reached TP (the live hit_rate)"
    )


def trade_result(candles: Candles, atr: float, bar: int, side: int, pip: float, rule: TradeRule) -> TradeResult | None:
    """The trade opened at Close[bar]; None without ATR or without the horizon's bars after it."""
    after = slice(bar + 1, bar + 1 + rule.horizon_bars)
    if not (np.isfinite(atr) and atr > 0) or len(candles.close[after]) < rule.horizon_bars:
        return None
    side_name = LONG if side > 0 else SHORT
    high, low, close = candles.high[after], candles.low[after], candles.close[after]
    return resolve(side_name, candles.close[bar], atr, high, low, close, pip, rule)


def backtest(
    candles: Candles,
    bars: np.ndarray,
    sides: np.ndarray,
    p: BarrierParams,
    cost_pips: float,
    pair: str = "EUR/USD",
) -> dict[str, object]:
    """Every signalled bar that can be resolved opens one unit trade (overlap allowed); pips net of cost."""
    rule, pip = p.trade_rule(cost_pips), pip_size(pair)
    atr = wilder_atr(candles.high, candles.low, candles.close, p.atr_period)
    results = [trade_result(candles, atr[b], int(b), int(s), pip, rule) for b, s in zip(bars, sides, strict=True)]
    kept = np.array([r is not None for r in results], dtype=bool)
    net = np.array([r.pips for r in results if r is not None])
    counts = {k: sum(r is not None and r.result == k for r in results) for k in (HIT, STOP, TIMEOUT)}
    positive_rate = round(float((net > 0).mean()), 6) if len(net) else None
    traded_sides = np.asarray(sides)[kept]
    equity = np.cumsum(net) if len(net) else np.zeros(0)
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    return {
        "cost_pips": cost_pips,
        "trades": int(len(net)),
        "longs": int((traded_sides > 0).sum()),
        "shorts": int((traded_sides < 0).sum()),
        "hits": counts[HIT],
        "stops": counts[STOP],
        "timeouts": counts[TIMEOUT],
        # share of trades that reached take profit: what the service's live hit_rate measures
        "take_profit_rate": round(counts[HIT] / len(net), 6) if len(net) else None,
        # share of trades with positive net pips; "hit_rate" is its old name, kept for old readers
        "positive_rate": positive_rate,
        "hit_rate": positive_rate,
        "total_pips": round(float(net.sum()), 3),
        "mean_pips": round(float(net.mean()), 4) if len(net) else None,
        "max_drawdown_pips": round(float((peak - equity).max()), 3) if len(net) else 0.0,
        "equity": [round(float(v), 3) for v in equity],
    }
