"""Request inputs -> the (window x features) rows a version's models take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from aifx.api.errors import BadCandles
from aifx.api.schemas import CandleIn
from aifx.candles import CandleDataError, Candles, validate_ohlc
from aifx.features import lookback, window_features
from aifx.versions import VersionSpec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_candles(data: list[CandleIn]) -> Candles:
    """Validated candle arrays (UTC timestamps); BadCandles names the first bad row."""
    micros = np.fromiter((_micros(c.timestamp) for c in data), np.int64, len(data))
    vols = [c.volume for c in data]
    volume = None if any(v is None for v in vols) else np.asarray(vols, dtype=np.float64)
    try:
        return validate_ohlc(
            micros.astype("datetime64[us]").astype("datetime64[ns]"),
            np.fromiter((c.open for c in data), np.float64, len(data)),
            np.fromiter((c.high for c in data), np.float64, len(data)),
            np.fromiter((c.low for c in data), np.float64, len(data)),
            np.fromiter((c.close for c in data), np.float64, len(data)),
            volume,
        )
    except CandleDataError as exc:
        raise BadCandles(f"data: {exc}") from None


def _micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch; naive timestamps are UTC."""
    return ((ts if ts.tzinfo else ts.replace(tzinfo=UTC)) - _EPOCH) // _US


def candle_rows(candles: Candles, spec: VersionSpec) -> np.ndarray:
    """The latest window computed from the last min_candles candles."""
    need = spec.min_candles
    if len(candles) < need:
        raise BadCandles(
            f"data: too few candles for {spec.version}: got {len(candles)}, need at least {need} "
            f"(window {spec.window} + {lookback(spec.features)} for indicator warm-up)"
        )
    try:
        return window_features(candles, spec.features, spec.window)
    except ValueError as exc:
        raise BadCandles(f"data: cannot compute features for {spec.version}: {exc}") from None


def feature_rows(features: list[list[float]], spec: VersionSpec) -> np.ndarray:
    """Precomputed rows: the last `window` rows, each with the version's features in order."""
    n = len(spec.features)
    bad = next((i for i, row in enumerate(features) if len(row) != n), None)
    if bad is not None:
        raise BadCandles(
            f"features: row {bad} has {len(features[bad])} values; {spec.version} needs {n} "
            f"in this order: {', '.join(spec.features)}"
        )
    if len(features) < spec.window:
        raise BadCandles(
            f"features: got {len(features)} rows, {spec.version} needs at least {spec.window} (its window)"
        )
    return np.asarray(features[-spec.window :], dtype=np.float64)
