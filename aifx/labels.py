"""Training labels: v3.0 swing points and v3.1 triple-barrier profitable reversals.

Each function returns float arrays with NaN where the label is undefined (not
enough bars before or after), so callers drop those bars instead of guessing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import talib


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
    """Per bar, whether a long and a short opened at Close[t] win (NaN if undefined)."""
    size = len(close)
    long_win = np.full(size, np.nan)
    short_win = np.full(size, np.nan)
    for t in range(size - p.horizon_bars):
        if not np.isfinite(atr[t]):
            continue
        long_win[t] = _first_touch(
            high[t + 1 : t + 1 + p.horizon_bars] >= close[t] + p.take_profit_atr * atr[t] + p.cost,
            low[t + 1 : t + 1 + p.horizon_bars] <= close[t] - p.stop_loss_atr * atr[t],
        )
        short_win[t] = _first_touch(
            low[t + 1 : t + 1 + p.horizon_bars] <= close[t] - p.take_profit_atr * atr[t] - p.cost,
            high[t + 1 : t + 1 + p.horizon_bars] >= close[t] + p.stop_loss_atr * atr[t],
        )
    return long_win, short_win


def _first_touch(target: np.ndarray, stop: np.ndarray) -> float:
    """1.0 if target is touched strictly before stop; a bar touching both is a loss."""
    hit_t = np.flatnonzero(target)
    if hit_t.size == 0:
        return 0.0
    hit_s = np.flatnonzero(stop)
    return float(hit_s.size == 0 or hit_t[0] < hit_s[0])


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
