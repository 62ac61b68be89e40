"""Request inputs -> the (window x features) rows a version's models take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import attrgetter, itemgetter
from typing import cast

import numpy as np
from pydantic import TypeAdapter, ValidationError

from aifx.candles import PRICE_RATIO, CandleDataError, Candles, plausible_rows, validate_ohlc
from aifx.features import NOT_FINITE, lookback, window_features, windows_features
from aifx.serving.errors import BadCandles, format_errors
from aifx.serving.schemas import END_TIME, FIRST_TIME, CandleIn, FastCandle
from aifx.versions import VersionSpec

_PRICES = itemgetter("open", "high", "low", "close")
_TIMESTAMP = itemgetter("timestamp")
_PRICE_ATTRS = tuple(attrgetter(k) for k in ("open", "high", "low", "close"))
_TIMESTAMP_ATTR, _VOLUME_ATTR = attrgetter("timestamp"), attrgetter("volume")
_DATETIME = TypeAdapter(datetime)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# Candle times the service takes: [FIRST_TIME, END_TIME) (aifx.serving.schemas, which also bounds query times).
_FIRST_US, _END_US = (int(np.datetime64(t, "us").astype(np.int64)) for t in (FIRST_TIME, END_TIME))


def to_candles(data: Sequence[CandleIn | FastCandle]) -> Candles:
    """Validated candle arrays (UTC timestamps); BadCandles names the first bad row."""
    n = len(data)
    prices = _prices(data).reshape(4, n)
    stamps = in_range(epoch_micros(_stamps(data))).astype("datetime64[us]").astype("datetime64[ns]")
    vols = _volumes(data)
    volume = None if vols is None or any(v is None for v in vols) else np.asarray(vols, dtype=np.float64)
    try:
        return validate_ohlc(stamps, prices[0], prices[1], prices[2], prices[3], volume, max_ratio=PRICE_RATIO)
    except CandleDataError as exc:
        raise BadCandles(f"data: {exc}") from None


def _structs(data: Sequence[CandleIn | FastCandle]) -> bool:
    """Whether the candles are FastCandle structs (the fast path's; a request's candles are all of one kind)."""
    return bool(data) and type(data[0]) is FastCandle


def _prices(flat: Sequence[CandleIn | FastCandle]) -> np.ndarray:
    """The open, high, low and close columns one after another (4 x len(flat) values)."""
    n = len(flat)
    if _structs(flat):
        return np.concatenate([np.fromiter(map(get, flat), np.float64, n) for get in _PRICE_ATTRS])
    dicts = cast(Sequence[CandleIn], flat)
    return np.fromiter(chain.from_iterable(map(_PRICES, dicts)), np.float64, 4 * n).reshape(n, 4).T.ravel()


def _stamps(flat: Sequence[CandleIn | FastCandle]) -> list[str | float]:
    get = cast(Callable[[object], str | float], _TIMESTAMP_ATTR if _structs(flat) else _TIMESTAMP)
    return list(map(get, flat))


def _volumes(flat: Sequence[CandleIn | FastCandle]) -> list[float | None] | None:
    """Each candle's volume (None where absent), or None when no candle has one."""
    if _structs(flat):
        vols = list(map(_VOLUME_ATTR, flat))
        return None if vols.count(None) == len(vols) else vols
    # Without a volume a candle has exactly the five other keys (the schema drops unknown ones).
    dicts = cast(Sequence[CandleIn], flat)
    return None if sum(map(len, dicts)) == 5 * len(dicts) else [c.get("volume") for c in dicts]


def to_candles_many(datas: Sequence[Sequence[CandleIn | FastCandle]]) -> list[Candles | BadCandles]:
    """to_candles of many requests' candles: equally long sets are parsed and checked together.

    A set that fails a check (or a group with volumes or unusual timestamps) goes through to_candles
    alone, so each bad item gets exactly its own message.
    """
    out: dict[int, Candles | BadCandles] = {}
    groups: dict[int, list[int]] = {}
    for i, data in enumerate(datas):
        groups.setdefault(len(data), []).append(i)
    for n, members in groups.items():
        stacked = _stacked(n, [datas[i] for i in members]) if n and len(members) > 1 else None
        for j, i in enumerate(members):
            found = stacked[j] if stacked is not None else None
            out[i] = found if found is not None else _one(datas[i])
    return [out[i] for i in range(len(datas))]


def _stacked(n: int, datas: list[Sequence[CandleIn | FastCandle]]) -> list[Candles | None] | None:
    """Sets of n candles parsed as one array; None for a set that failed a check (None: all go alone)."""
    flat = list(chain.from_iterable(datas))
    if any(_structs(d) != _structs(flat) for d in datas):
        return None  # candles of both kinds: each set alone
    vols = _volumes(flat)
    if vols is not None and any(v is not None for v in vols):
        return None
    b = len(datas)
    prices = _prices(flat).reshape(4, b, n)
    try:
        micros = epoch_micros(_stamps(flat)).reshape(b, n)
    except BadCandles:
        return None
    stamps = micros.astype("datetime64[us]").astype("datetime64[ns]")
    ok = plausible_rows(stamps, prices[0], prices[1], prices[2], prices[3], PRICE_RATIO)
    ok &= ((micros >= _FIRST_US) & (micros < _END_US)).all(axis=1)
    return [
        Candles(stamps[j], prices[0, j], prices[1, j], prices[2, j], prices[3, j]) if good else None
        for j, good in enumerate(ok.tolist())
    ]


def _one(data: Sequence[CandleIn | FastCandle]) -> Candles | BadCandles:
    try:
        return to_candles(data)
    except BadCandles as exc:
        return exc


def in_range(micros: np.ndarray) -> np.ndarray:
    """The UTC microseconds when every candle time is in [1970-01-01, 2100-01-01); else BadCandles naming the row."""
    bad = np.flatnonzero((micros < _FIRST_US) | (micros >= _END_US))
    if bad.size:
        i = int(bad[0])
        try:
            shown = f"{_EPOCH + int(micros[i]) * _US:%Y-%m-%dT%H:%M:%S}Z "
        except OverflowError:  # not reachable through the parsers (years 1-9999), but never a 500
            shown = ""
        raise BadCandles(
            f"data[{i}].timestamp: {shown}is outside the supported range {FIRST_TIME} to {END_TIME} (UTC); "
            "send ISO-8601 (e.g. 2017-01-02T00:00:00Z) or Unix seconds/milliseconds"
        )
    return micros


def epoch_micros(stamps: list[str | float]) -> np.ndarray:
    """UTC microseconds since the epoch; `YYYY-MM-DDTHH:MM:SSZ` text in one vectorised parse."""
    fixed = _fixed_width(stamps)
    if fixed is not None:
        try:
            return fixed.astype("datetime64[us]").astype(np.int64)
        except ValueError:
            pass  # not a valid date: the per-value path says which one and why
    return np.fromiter((_micros(i, s) for i, s in enumerate(stamps)), np.int64, len(stamps))


def _fixed_width(stamps: list[str | float]) -> np.ndarray | None:
    """`YYYY-MM-DDTHH:MM:SS` of each value as one bytes array when every value is exactly `dddd-dd-ddTdd:dd:ddZ`
    (ASCII digits where the digits go), else None: then the per-value path decides, so numpy's more lenient
    reading (spaces, NUL padding, a sign) never accepts what pydantic refuses. C-level and numpy steps only."""
    try:
        joined = "".join(cast(list[str], stamps))  # TypeError: a value that is not text
    except TypeError:
        return None
    n = len(stamps)
    if len(joined) != 20 * n or set(map(len, cast(list[str], stamps))) != {20}:
        return None
    try:
        raw = joined.encode("ascii")
    except UnicodeEncodeError:
        return None
    cells = np.frombuffer(raw, dtype=np.uint8).reshape(n, 20)
    if ((cells - _LOW) > _SPAN).any():  # uint8: a byte below its position's lowest wraps around above the span
        return None
    return cells[:, :19].copy().view("S19").ravel()


# Per position of `dddd-dd-ddTdd:dd:ddZ`: the lowest byte allowed and how far above it may go (digits; a year
# from 1000, as numpy reads year 0 where pydantic refuses it: later ones fail the range check with their message).
_FORM = b"1000-00-00T00:00:00Z"
_LOW = np.frombuffer(_FORM, dtype=np.uint8)
_SPAN = np.array([8 if i == 0 else 9 if c in b"01" else 0 for i, c in enumerate(_FORM)], dtype=np.uint8)


def _micros(row: int, value: str | float) -> int:
    """One timestamp as pydantic reads a datetime (ISO-8601 or Unix s/ms); naive means UTC."""
    try:
        ts = _DATETIME.validate_python(value)
    except ValidationError as exc:
        errors = [{**e, "loc": ("data", row, "timestamp")} for e in exc.errors(include_url=False)]
        raise BadCandles(format_errors(errors)) from None
    return ((ts if ts.tzinfo else ts.replace(tzinfo=UTC)) - _EPOCH) // _US


def candle_rows(candles: Candles, spec: VersionSpec) -> np.ndarray:
    """The latest window computed from the last min_candles candles."""
    try:
        return window_features(candle_tail(candles, spec), spec.features, spec.window)
    except ValueError as exc:
        raise BadCandles(f"data: cannot compute features for {spec.version}: {exc}") from None


def candle_tail(candles: Candles, spec: VersionSpec) -> Candles:
    """The last min_candles candles, those a version's latest window is computed from."""
    need = spec.min_candles
    if len(candles) < need:
        raise BadCandles(
            f"data: too few candles for {spec.version}: got {len(candles)}, need at least {need} "
            f"(window {spec.window} + {lookback(spec.features)} for indicator warm-up); or post the closed candles "
            "to /reversal/candles: a shorter request whose candles are the stored ones is topped up from them"
        )
    return candles.tail(need)


def candle_rows_many(tails: Sequence[tuple[Candles, VersionSpec]]) -> list[np.ndarray | BadCandles]:
    """candle_rows of many candle tails (from candle_tail), each version's in one pass; a bad window fails alone."""
    out: dict[int, np.ndarray | BadCandles] = {}
    groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
    for i, (_, spec) in enumerate(tails):
        groups.setdefault((tuple(spec.features), spec.window), []).append(i)
    for (names, window), members in groups.items():
        mats = windows_features([tails[i][0] for i in members], names, window)
        finite = np.isfinite(mats).all(axis=(1, 2))
        for i, mat, ok in zip(members, mats, finite.tolist(), strict=True):
            version = tails[i][1].version
            out[i] = mat if ok else BadCandles(f"data: cannot compute features for {version}: {NOT_FINITE}")
    return [out[i] for i in range(len(tails))]


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
    rows = np.asarray(features[-spec.window :], dtype=np.float64)
    # The request schema bounds every value (schemas.FEATURE_LIMIT); this guards the stage call, which
    # other requests share, against anything that would still be infinite in the models' float32.
    with np.errstate(over="ignore"):
        finite = bool(np.isfinite(rows.astype(np.float32)).all())
    if not finite:
        raise BadCandles(f"features: values must be finite numbers within float32 range for {spec.version}")
    return rows
