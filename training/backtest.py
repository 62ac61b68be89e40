"""Cost-aware backtest of the two-stage signal with barrier exits."""

from __future__ import annotations

import numpy as np

from aifx.candles import Candles
from aifx.labels import BarrierParams, wilder_atr

PIP = 0.0001


def trade_pips(candles: Candles, atr: float, bar: int, side: int, p: BarrierParams) -> float:
    """Gross pips of one trade opened at Close[bar]: TP, SL (a bar touching both is SL) or horizon close."""
    entry = candles.close[bar]
    if not np.isfinite(atr):
        return 0.0
    tp, sl = p.take_profit_atr * atr, p.stop_loss_atr * atr
    end = min(bar + p.horizon_bars, len(candles) - 1)
    for j in range(bar + 1, end + 1):
        up, down = candles.high[j] - entry, entry - candles.low[j]
        favourable, adverse = (up, down) if side > 0 else (down, up)
        if adverse >= sl:
            return -sl / PIP
        if favourable >= tp:
            return tp / PIP
    return side * (candles.close[end] - entry) / PIP


def backtest(
    candles: Candles, bars: np.ndarray, sides: np.ndarray, p: BarrierParams, cost_pips: float
) -> dict[str, object]:
    """Every signalled bar opens one unit trade (overlap allowed); pips net of cost."""
    atr = wilder_atr(candles.high, candles.low, candles.close, p.atr_period)
    pips = np.array([trade_pips(candles, atr[b], int(b), int(s), p) for b, s in zip(bars, sides, strict=True)])
    net = pips - cost_pips
    equity = np.cumsum(net) if len(net) else np.zeros(0)
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    return {
        "cost_pips": cost_pips,
        "trades": int(len(net)),
        "longs": int((sides > 0).sum()),
        "shorts": int((sides < 0).sum()),
        "hit_rate": round(float((net > 0).mean()), 6) if len(net) else None,
        "total_pips": round(float(net.sum()), 3),
        "mean_pips": round(float(net.mean()), 4) if len(net) else None,
        "max_drawdown_pips": round(float((peak - equity).max()), 3) if len(net) else 0.0,
        "equity": [round(float(v), 3) for v in equity],
    }
