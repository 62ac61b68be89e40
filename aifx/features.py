"""The one feature module: training and serving both compute features here.

Every feature at bar t uses bars <= t only (TA-Lib recursions run forward), so
appending candles never changes an earlier row. A model sample at bar t is the
last `window` rows computed from the last `min_candles` candles ending at t; the
server does exactly the same with the candles of a request.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, cached_property
from typing import Any

import numpy as np

from aifx.candles import Candles
from aifx.ta import talib


class Bars:
    """One call's candles plus the intermediates several features share, each computed once."""

    def __init__(self, candles: Candles) -> None:
        self.c = candles

    @cached_property
    def atr(self) -> np.ndarray:
        c = self.c
        return _ta(talib.ATR, c.high, c.low, c.close, timeperiod=14)

    @cached_property
    def range(self) -> np.ndarray:
        return self.c.high - self.c.low

    @cached_property
    def hour_angle(self) -> np.ndarray:
        """The bar's UTC hour of day as an angle (0 .. 2 pi)."""
        hours = self.c.timestamp.astype("datetime64[h]").astype(np.int64) % 24
        return 2.0 * np.pi * hours.astype(np.float64) / 24.0


FeatureFn = Callable[[Bars], np.ndarray]
NOT_FINITE = "features are not finite for these candles"  # a window that no model may take
# Every feature works on one candle series (1-D columns) or on a stack of equally long series (2-D,
# one row each: the windows of a batch), elementwise along the last axis, so a batch pays numpy's
# per-call overhead once instead of once per window.


def _ta(fn: Callable[..., Any], *columns: np.ndarray, **params: Any) -> Any:
    """A TA-Lib function over the last axis (TA-Lib takes 1-D arrays, so a stack goes row by row)."""
    if columns[0].ndim == 1:
        return fn(*columns, **params)
    rows = [fn(*(c[i] for c in columns), **params) for i in range(columns[0].shape[0])]
    if isinstance(rows[0], tuple):
        return tuple(_stack(out) for out in zip(*rows, strict=True))
    return _stack(rows)


def _stack(rows: Sequence[np.ndarray]) -> np.ndarray:
    """np.stack of equally long 1-D rows, without its per-row Python steps (~0.6 us a row)."""
    return np.concatenate(rows).reshape(len(rows), -1)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (a flat bar has no body or wick ratio), NaN where either is NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[(den == 0) & (num == num)] = 0.0  # num == num is False only for NaN
    return out


def _log_return(lag: int) -> FeatureFn:
    def fn(b: Bars) -> np.ndarray:
        close = b.c.close
        out = np.full(close.shape, np.nan)
        out[..., lag:] = np.log(close[..., lag:] / close[..., :-lag])
        return out

    return fn


def _range_atr(b: Bars) -> np.ndarray:
    return _safe_div(b.range, b.atr)


def _body_ratio(b: Bars) -> np.ndarray:
    return _safe_div(b.c.close - b.c.open, b.range)


def _upper_wick(b: Bars) -> np.ndarray:
    return _safe_div(b.c.high - np.maximum(b.c.open, b.c.close), b.range)


def _lower_wick(b: Bars) -> np.ndarray:
    return _safe_div(np.minimum(b.c.open, b.c.close) - b.c.low, b.range)


def _rsi14(b: Bars) -> np.ndarray:
    return _ta(talib.RSI, b.c.close, timeperiod=14) / 100.0


def _stoch_k(b: Bars) -> np.ndarray:
    c = b.c
    k, _ = _ta(talib.STOCH, c.high, c.low, c.close, fastk_period=14, slowk_period=3, slowd_period=3)
    return k / 100.0


def _bb_pctb(b: Bars) -> np.ndarray:
    upper, _, lower = _ta(talib.BBANDS, b.c.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    return _safe_div(b.c.close - lower, upper - lower)


def _macd_hist_atr(b: Bars) -> np.ndarray:
    _, _, hist = _ta(talib.MACD, b.c.close, fastperiod=12, slowperiod=26, signalperiod=9)
    return _safe_div(hist, b.atr)


def _dist_sma20_atr(b: Bars) -> np.ndarray:
    return _safe_div(b.c.close - _ta(talib.SMA, b.c.close, timeperiod=20), b.atr)


def _high_dist10_atr(b: Bars) -> np.ndarray:
    return _safe_div(_ta(talib.MAX, b.c.high, timeperiod=10) - b.c.high, b.atr)


def _low_dist10_atr(b: Bars) -> np.ndarray:
    return _safe_div(b.c.low - _ta(talib.MIN, b.c.low, timeperiod=10), b.atr)


def _willr14(b: Bars) -> np.ndarray:
    c = b.c
    return _ta(talib.WILLR, c.high, c.low, c.close, timeperiod=14) / 100.0


def _cci20(b: Bars) -> np.ndarray:
    c = b.c
    return _ta(talib.CCI, c.high, c.low, c.close, timeperiod=20) / 100.0


def _adx14(b: Bars) -> np.ndarray:
    c = b.c
    return _ta(talib.ADX, c.high, c.low, c.close, timeperiod=14) / 100.0


def _atr_ratio_5_20(b: Bars) -> np.ndarray:
    c = b.c
    return _safe_div(
        _ta(talib.ATR, c.high, c.low, c.close, timeperiod=5), _ta(talib.ATR, c.high, c.low, c.close, timeperiod=20)
    )


def _hour_sin(b: Bars) -> np.ndarray:
    return np.sin(b.hour_angle)


def _hour_cos(b: Bars) -> np.ndarray:
    return np.cos(b.hour_angle)


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
    "ret_24": _log_return(24),
    "atr_ratio_5_20": _atr_ratio_5_20,
    "hour_sin": _hour_sin,
    "hour_cos": _hour_cos,
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
# v3.2 "transformer": v3.1's per-bar features plus what attention over 20 bars cannot rebuild from them:
# a 24-bar return (context beyond the window), short against longer volatility (ATR 5 / ATR 20: the
# barriers are ATR-scaled, so whether one is hit depends on volatility expanding or contracting) and
# the UTC hour as a point on a circle (FX volatility follows the Asian, London and New York sessions).
# Chosen before any evaluation; no warm-up beyond v3.1's (MACD's 33 bars), so both need 53 candles.
V32_FEATURES = (*V31_FEATURES, "ret_24", "atr_ratio_5_20", "hour_sin", "hour_cos")
FEATURE_SETS: dict[str, tuple[str, ...]] = {"v3.0": V30_FEATURES, "v3.1": V31_FEATURES, "v3.2": V32_FEATURES}


def compute_features(candles: Candles, names: Sequence[str]) -> np.ndarray:
    """Feature matrix (bars x features; windows x bars x features for stacked series), NaN during warm-up."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise KeyError(f"unknown feature(s): {', '.join(unknown)}")
    bars = Bars(candles)
    return np.stack([FEATURES[n](bars) for n in names], axis=-1)


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
        raise ValueError(NOT_FINITE)
    return mat


def windows_features(tails: Sequence[Candles], names: Sequence[str], window: int) -> np.ndarray:
    """window_features of many candle sets of min_candles each, in one pass: (sets x window x features).

    Rows that are not finite are left for the caller to refuse per set (one bad set must not fail the rest).
    """
    need = min_candles(names, window)
    if any(len(c) != need for c in tails):
        raise ValueError(f"every candle set must hold exactly {need} candles")
    columns = ("timestamp", "open", "high", "low", "close")
    stacked = Candles(*(_stack([getattr(c, f) for c in tails]) for f in columns))
    return compute_features(stacked, names)[:, -window:]


def sample_windows(candles: Candles, names: Sequence[str], window: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples for every bar that has enough history: (n, window, features) and bar indices."""
    need = min_candles(names, window)
    ends = np.arange(need - 1, len(candles))
    out = np.empty((len(ends), window, len(names)), dtype=np.float64)
    for i, t in enumerate(ends.tolist()):
        out[i] = window_features(candles.slice(t + 1 - need, t + 1), names, window)
    return out, ends
