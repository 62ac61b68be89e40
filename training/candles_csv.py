"""The CSV loader for user-supplied candles (gym-anytrading, ISO-timestamp and MT4 layouts).

It lives with training and import: pandas parses the files, and serving never reads a CSV.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from aifx.candles import PRICE_COLUMNS, CandleDataError, Candles, validate_ohlc

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
