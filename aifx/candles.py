"""Candle arrays, OHLC validation and the CSV loader for user-supplied data."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class CandleDataError(ValueError):
    """Candles that cannot be used, with a message that says what is wrong."""


@dataclass(frozen=True)
class Candles:
    """OHLC(V) columns as float64 arrays plus UTC timestamps (datetime64[ns])."""

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.close)

    def tail(self, n: int) -> Candles:
        """The last n candles."""
        return self.slice(max(len(self) - n, 0), len(self))

    def slice(self, start: int, stop: int) -> Candles:
        """Candles[start:stop]."""
        vol = None if self.volume is None else self.volume[start:stop]
        return Candles(
            self.timestamp[start:stop],
            self.open[start:stop],
            self.high[start:stop],
            self.low[start:stop],
            self.close[start:stop],
            vol,
        )


PRICE_COLUMNS = ("open", "high", "low", "close")


def validate_ohlc(
    timestamp: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None = None,
) -> Candles:
    """Check prices and timestamps; raise CandleDataError naming the first bad row."""
    if _plausible(open_, high, low, close, volume, timestamp):
        return Candles(timestamp, open_, high, low, close, volume)
    cols = {"open": open_, "high": high, "low": low, "close": close}
    for name, values in cols.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise CandleDataError(f"row {bad[0]}: {name} is NaN or infinite")
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            raise CandleDataError(f"row {bad[0]}: {name} must be positive, got {values[bad[0]]}")
    bad = np.flatnonzero(high < low)
    if bad.size:
        i = bad[0]
        raise CandleDataError(f"row {i}: high {high[i]} is below low {low[i]}")
    for name in ("open", "close"):
        values = cols[name]
        bad = np.flatnonzero((values > high) | (values < low))
        if bad.size:
            i = bad[0]
            raise CandleDataError(f"row {i}: {name} {values[i]} is outside the bar's range [{low[i]}, {high[i]}]")
    if volume is not None:
        bad = np.flatnonzero(~np.isfinite(volume) | (volume < 0))
        if bad.size:
            raise CandleDataError(f"row {bad[0]}: volume must be a finite number >= 0")
    _check_order(timestamp)
    return Candles(timestamp, open_, high, low, close, volume)


def _plausible(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
    timestamp: np.ndarray,
) -> bool:
    """Every check of validate_ohlc in a few vectorised steps (NaN fails every comparison)."""
    with np.errstate(invalid="ignore"):
        ok = bool(
            (low > 0).all()
            and (high < np.inf).all()
            and (np.minimum(open_, close) >= low).all()
            and (np.maximum(open_, close) <= high).all()
        )
        if volume is not None:
            ok = ok and bool(((volume >= 0) & (volume < np.inf)).all())
    if ok and timestamp.size > 1:
        ok = bool((np.diff(timestamp.astype("datetime64[ns]").astype(np.int64)) > 0).all())
    return ok


def _check_order(timestamp: np.ndarray) -> None:
    """Timestamps must be strictly increasing."""
    if timestamp.size < 2:
        return
    steps = np.diff(timestamp.astype("datetime64[ns]").astype(np.int64))
    dup = np.flatnonzero(steps == 0)
    if dup.size:
        i = dup[0] + 1
        raise CandleDataError(f"row {i}: duplicate timestamp {timestamp[i]}")
    back = np.flatnonzero(steps < 0)
    if back.size:
        i = back[0] + 1
        raise CandleDataError(f"row {i}: timestamps are not sorted ({timestamp[i]} comes after {timestamp[i - 1]})")


_TIME_NAMES = ("timestamp", "time", "datetime", "date", "gmt time", "local time")
_GYM_FORMAT = "%d.%m.%Y %H:%M:%S.%f"


def load_candles_csv(path: str | Path) -> Candles:
    """Read an OHLC(V) CSV (gym-anytrading, ISO-timestamp or MT4 export layout)."""
    path = Path(path)
    if not path.is_file():
        raise CandleDataError(f"{path}: no such file")
    frame = _read_frame(path)
    if frame.empty:
        raise CandleDataError(f"{path}: no data rows")
    try:
        return frame_to_candles(frame)
    except CandleDataError as exc:
        raise CandleDataError(f"{path}: {exc}") from None


def _read_frame(path: Path) -> pd.DataFrame:
    """Parse the file into columns timestamp, open, high, low, close[, volume]."""
    with path.open(newline="") as fh:
        first = next(csv.reader(fh), None)
    if first is None:
        raise CandleDataError(f"{path}: file is empty")
    if _is_mt4_row(first):
        names = ["date", "clock", "open", "high", "low", "close", "volume"][: len(first)]
        frame = pd.read_csv(path, header=None, names=names, dtype=str)
        frame["timestamp"] = frame.pop("date") + " " + frame.pop("clock")
        return _parse(frame, path, "%Y.%m.%d %H:%M")
    frame = pd.read_csv(path, dtype=str)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    time_col = next((c for c in _TIME_NAMES if c in frame.columns), None)
    missing = [c for c in PRICE_COLUMNS if c not in frame.columns]
    if time_col is None:
        missing.insert(0, "timestamp")
    if missing:
        raise CandleDataError(
            f"{path}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(frame.columns)}; need a time column and open, high, low, close"
        )
    frame = frame.rename(columns={time_col: "timestamp"})
    if frame.empty:
        raise CandleDataError(f"{path}: no data rows")
    sample = str(frame["timestamp"].iloc[0])
    fmt = _GYM_FORMAT if _looks_like_gym(sample) else None
    return _parse(frame, path, fmt)


def _is_mt4_row(row: list[str]) -> bool:
    """MT4 history exports have no header: 2017.01.02,00:00,O,H,L,C,V."""
    return len(row) >= 6 and len(row[0]) == 10 and row[0][4] == "." and ":" in row[1]


def _looks_like_gym(value: str) -> bool:
    return len(value) >= 10 and value[2] == "." and value[5] == "."


def _parse(frame: pd.DataFrame, path: Path, fmt: str | None) -> pd.DataFrame:
    """Convert text columns to UTC timestamps and floats, naming the first bad cell."""
    raw = frame["timestamp"].astype(str).str.strip()
    if fmt is None:
        ts = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
    else:
        ts = pd.to_datetime(raw, errors="coerce", format=fmt).dt.tz_localize("UTC")
    bad = np.flatnonzero(ts.isna().to_numpy())
    if bad.size:
        raise CandleDataError(f"{path}: row {bad[0]}: unparsable timestamp {raw.iloc[bad[0]]!r}")
    out = pd.DataFrame({"timestamp": ts.dt.tz_convert(None)})
    for col in (*PRICE_COLUMNS, "volume"):
        if col not in frame.columns:
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        text = frame[col]
        bad = np.flatnonzero(values.isna().to_numpy() & text.notna().to_numpy())
        if bad.size:
            raise CandleDataError(f"{path}: row {bad[0]}: {col} is not a number: {text.iloc[bad[0]]!r}")
        out[col] = values
    return out


def frame_to_candles(frame: pd.DataFrame) -> Candles:
    """Validate a frame with timestamp/open/high/low/close[/volume] columns."""
    volume = frame["volume"].to_numpy(np.float64) if "volume" in frame.columns else None
    return validate_ohlc(
        frame["timestamp"].to_numpy("datetime64[ns]"),
        frame["open"].to_numpy(np.float64),
        frame["high"].to_numpy(np.float64),
        frame["low"].to_numpy(np.float64),
        frame["close"].to_numpy(np.float64),
        volume,
    )
