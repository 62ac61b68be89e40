"""Training labels: v3.0 swing points and v3.1 triple-barrier profitable reversals.

Each function returns float arrays with NaN where the label is undefined (not
enough bars before or after), so callers drop those bars instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from aifx.ta import talib
from aifx.trade import HIT, RESULT_CODES, TradeRule, outcomes, pip_size

# The training candles are EUR/USD: BarrierParams.cost is the one pip added to the take profit, in price.
LABEL_PIP = pip_size("EUR/USD")


@dataclass(frozen=True)
class SwingParams:
    """v3.0: bar t is a swing if it beats the n bars on each side strictly."""

    n: int = 5

    @property
    def horizon(self) -> int:
        return self.n

    def to_dict(self) -> dict[str, object]:
        return {"scheme": "swing_point", **asdict(self)}


@dataclass(frozen=True)
class BarrierParams:
    """v3.1: take profit / stop loss in ATR multiples within a bar horizon."""

    atr_period: int = 14
    take_profit_atr: float = 2.0
    stop_loss_atr: float = 1.0
    horizon_bars: int = 12
    cost: float = 0.0001

    @property
    def horizon(self) -> int:
        return self.horizon_bars

    def to_dict(self) -> dict[str, object]:
        return {"scheme": "triple_barrier", **asdict(self)}

    def trade_rule(self, cost_pips: float = 1.0) -> TradeRule:
        """The same barriers as the one trade rule of aifx.trade (cost moves the take profit only)."""
        return TradeRule(
            take_profit_atr=self.take_profit_atr,
            stop_loss_atr=self.stop_loss_atr,
            horizon_bars=self.horizon_bars,
            take_profit_extra_pips=self.cost / LABEL_PIP,
            cost_pips=cost_pips,
        )


@dataclass(frozen=True)
class StageLabels:
    """Stage 1 (reversal 1/0) and Stage 2 (long 1 / short 0, NaN off Stage-1 positives)."""

    stage1: np.ndarray
    stage2: np.ndarray


def swing_labels(high: np.ndarray, low: np.ndarray, p: SwingParams = SwingParams()) -> StageLabels:
    """Swing high: High[t] > every High in the n bars before and after; swing low likewise."""
    n, size = p.n, len(high)
    stage1 = np.full(size, np.nan)
    stage2 = np.full(size, np.nan)
    for t in range(n, size - n):
        hood_h = np.concatenate([high[t - n : t], high[t + 1 : t + n + 1]])
        hood_l = np.concatenate([low[t - n : t], low[t + 1 : t + n + 1]])
        swing_high = bool(high[t] > hood_h.max())
        swing_low = bool(low[t] < hood_l.min())
        stage1[t] = float(swing_high or swing_low)
        if swing_high != swing_low:  # an outside bar that is both has no direction
            stage2[t] = 1.0 if swing_low else 0.0
    return StageLabels(stage1, stage2)


def barrier_outcomes(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, p: BarrierParams
) -> tuple[np.ndarray, np.ndarray]:
    """Per bar, whether a long and a short opened at Close[t] reach take profit (NaN if undefined)."""
    long_code, short_code = outcomes(high, low, close, atr, LABEL_PIP, p.trade_rule())
    return _won(long_code), _won(short_code)


def _won(codes: np.ndarray) -> np.ndarray:
    """1.0 for a hit; a stop or a timeout is a loss (0.0); NaN stays NaN."""
    return np.where(np.isnan(codes), np.nan, (codes == RESULT_CODES[HIT]).astype(float))


def wilder_atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's ATR (TA-Lib), NaN during warm-up."""
    return talib.ATR(high, low, close, timeperiod=period)


def barrier_labels(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, p: BarrierParams = BarrierParams()
) -> StageLabels:
    """Stage 1: a long or a short wins; Stage 2 on positives: long 1, short 0."""
    atr = wilder_atr(high, low, close, p.atr_period)
    long_win, short_win = barrier_outcomes(high, low, close, atr, p)
    stage1 = np.where(np.isnan(long_win), np.nan, np.maximum(long_win, short_win))
    stage2 = np.where(stage1 == 1.0, long_win, np.nan)
    return StageLabels(stage1, stage2)
