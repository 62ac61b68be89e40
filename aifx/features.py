"""The one feature module: training and serving both compute features here.

Every feature at bar t uses bars <= t only (TA-Lib recursions run forward), so
appending candles never changes an earlier row. A model sample at bar t is the
last `window` rows computed from the last `min_candles` candles ending at t; the
server does exactly the same with the candles of a request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import talib

from aifx.candles import Candles

FeatureFn = Callable[[Candles], np.ndarray]


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (a flat bar has no body or wick ratio)."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def _log_return(lag: int) -> FeatureFn:
    def fn(c: Candles) -> np.ndarray:
        out = np.full(len(c), np.nan)
        out[lag:] = np.log(c.close[lag:] / c.close[:-lag])
        return out

    return fn


def _atr(c: Candles) -> np.ndarray:
    return talib.ATR(c.high, c.low, c.close, timeperiod=14)


def _range_atr(c: Candles) -> np.ndarray:
    return _safe_div(c.high - c.low, _atr(c))


def _body_ratio(c: Candles) -> np.ndarray:
    return _safe_div(c.close - c.open, c.high - c.low)


def _upper_wick(c: Candles) -> np.ndarray:
    return _safe_div(c.high - np.maximum(c.open, c.close), c.high - c.low)


def _lower_wick(c: Candles) -> np.ndarray:
    return _safe_div(np.minimum(c.open, c.close) - c.low, c.high - c.low)


def _rsi14(c: Candles) -> np.ndarray:
    return talib.RSI(c.close, timeperiod=14) / 100.0


def _stoch_k(c: Candles) -> np.ndarray:
    k, _ = talib.STOCH(c.high, c.low, c.close, fastk_period=14, slowk_period=3, slowd_period=3)
    return k / 100.0


def _bb_pctb(c: Candles) -> np.ndarray:
    upper, _, lower = talib.BBANDS(c.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    return _safe_div(c.close - lower, upper - lower)


def _macd_hist_atr(c: Candles) -> np.ndarray:
    _, _, hist = talib.MACD(c.close, fastperiod=12, slowperiod=26, signalperiod=9)
    return _safe_div(hist, _atr(c))


def _dist_sma20_atr(c: Candles) -> np.ndarray:
    return _safe_div(c.close - talib.SMA(c.close, timeperiod=20), _atr(c))


def _high_dist10_atr(c: Candles) -> np.ndarray:
    return _safe_div(talib.MAX(c.high, timeperiod=10) - c.high, _atr(c))


def _low_dist10_atr(c: Candles) -> np.ndarray:
    return _safe_div(c.low - talib.MIN(c.low, timeperiod=10), _atr(c))


def _willr14(c: Candles) -> np.ndarray:
    return talib.WILLR(c.high, c.low, c.close, timeperiod=14) / 100.0


def _cci20(c: Candles) -> np.ndarray:
    return talib.CCI(c.high, c.low, c.close, timeperiod=20) / 100.0


def _adx14(c: Candles) -> np.ndarray:
    return talib.ADX(c.high, c.low, c.close, timeperiod=14) / 100.0


FEATURES: dict[str, FeatureFn] = {
    "ret_1": _log_return(1),
    "ret_3": _log_return(3),
    "ret_5": _log_return(5),
    "ret_12": _log_return(12),
    "range_atr": _range_atr,
    "body_ratio": _body_ratio,
    "upper_wick": _upper_wick,
    "lower_wick": _lower_wick,
    "rsi14": _rsi14,
    "stoch_k": _stoch_k,
    "bb_pctb": _bb_pctb,
    "macd_hist_atr": _macd_hist_atr,
    "dist_sma20_atr": _dist_sma20_atr,
    "high_dist10_atr": _high_dist10_atr,
    "low_dist10_atr": _low_dist10_atr,
    "willr14": _willr14,
    "cci20": _cci20,
    "adx14": _adx14,
}

# v3.0 "swing point": where the bar sits in its recent range, plus oscillators.
V30_FEATURES = (
    "ret_1", "ret_5", "high_dist10_atr", "low_dist10_atr", "range_atr",
    "body_ratio", "rsi14", "willr14", "cci20", "adx14",
)  # fmt: skip
# v3.1 "profitable": momentum, volatility and candle shape (12 features, as the seed's v3.1).
V31_FEATURES = (
    "ret_1", "ret_3", "ret_12", "range_atr", "body_ratio", "upper_wick",
    "lower_wick", "rsi14", "stoch_k", "bb_pctb", "macd_hist_atr", "dist_sma20_atr",
)  # fmt: skip
FEATURE_SETS: dict[str, tuple[str, ...]] = {"v3.0": V30_FEATURES, "v3.1": V31_FEATURES}


def compute_features(candles: Candles, names: Sequence[str]) -> np.ndarray:
    """Feature matrix (bars x features), NaN during each indicator's warm-up."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise KeyError(f"unknown feature(s): {', '.join(unknown)}")
    return np.column_stack([FEATURES[n](candles) for n in names])


@cache
def lookback(names: tuple[str, ...]) -> int:
    """Number of leading rows that are NaN for these features (indicator warm-up)."""
    rng = np.random.default_rng(0)
    n = 400
    close = 1.1 + np.cumsum(rng.normal(0, 1e-3, n))
    high, low = close + 5e-4, close - 5e-4
    ts = np.arange(n).astype("datetime64[h]").astype("datetime64[ns]")
    mat = compute_features(Candles(ts, close, high, low, close), names)
    nan_rows = np.flatnonzero(np.isnan(mat).any(axis=1))
    return int(nan_rows.max()) + 1 if nan_rows.size else 0


def min_candles(names: Sequence[str], window: int) -> int:
    """Candles a request needs: the window plus the indicators' warm-up."""
    return window + lookback(tuple(names))


def window_features(candles: Candles, names: Sequence[str], window: int) -> np.ndarray:
    """The (window x features) sample for the latest bar, from its last min_candles candles."""
    need = min_candles(names, window)
    if len(candles) < need:
        raise ValueError(f"need at least {need} candles, got {len(candles)}")
    mat = compute_features(candles.tail(need), names)[-window:]
    if not np.isfinite(mat).all():
        raise ValueError("features are not finite for these candles")
    return mat


def sample_windows(candles: Candles, names: Sequence[str], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples for every bar that has enough history: (n, window, features) and bar indices."""
    need = min_candles(names, window)
    ends = np.arange(need - 1, len(candles))
    out = np.empty((len(ends), window, len(names)), dtype=np.float64)
    for i, t in enumerate(ends.tolist()):
        out[i] = window_features(candles.slice(t + 1 - need, t + 1), names, window)
    return out, ends
