"""Which instruments and bars the outcome loop may log: the instrument table, canonical timeframes, the bar grid.

Pure: no I/O. The evaluation log takes a bar only when its pair is in the instrument table (the pip
table plus AIFX_PIP_SIZES), its timeframe is canonical, its time lies on the timeframe's grid, not
in the future beyond one bar of clock skew and not older than the outcome expiry, and its prices
are normal floats in the instrument's band. An unknown pair is served but never logged.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aifx import trade

# A price outside 1,000 to 1,000,000 pips is no quote of a currency pair: EUR/USD 1.1 is 11,000 pips,
# USD/JPY 150 is 15,000, USD/SEK 10.5 is 105,000. It is a scaled, corrupt or hostile tick.
BAND_PIPS = (1_000.0, 1_000_000.0)
# ATR14 below half a pip makes R = pips / ATR in pips explode for a one-pip cost; no real 1m bar is that quiet.
MIN_ATR_PIPS = 0.5
_UNITS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_PLAIN = re.compile(r"(\d{1,4})([mhdw])")
_MT4 = re.compile(r"([mhdw])(\d{1,4})")
MAX_TIMEFRAME_S = 604_800


@dataclass(frozen=True, slots=True)
class Instrument:
    """A pair from the instrument table: its pip size and the band its prices lie in."""

    name: str
    pip: float

    @property
    def low(self) -> float:
        return BAND_PIPS[0] * self.pip

    @property
    def high(self) -> float:
        return BAND_PIPS[1] * self.pip

    def plausible(self, price: float) -> bool:
        """A normal, finite float inside the instrument's band."""
        return _normal(price) and self.low <= price <= self.high

    def describe_band(self) -> str:
        return f"{self.name} prices must lie between {self.low:g} and {self.high:g}"


def instrument(pair: str, extra: Mapping[str, float] | None = None) -> Instrument | None:
    """The pair's table entry (configured extra pip sizes first), or None for a pair not in the table."""
    try:
        name = trade.normalise_pair(pair)
    except trade.UnknownPair:
        return None
    for key, pip in (extra or {}).items():
        try:
            if trade.normalise_pair(key) == name:
                return Instrument(name, float(pip))
        except trade.UnknownPair:
            continue
    known = trade.PIP_SIZES.get(name)
    return None if known is None else Instrument(name, known)


def canonical_timeframe(timeframe: str) -> str | None:
    """'1h', '1H', 'H1', '60m' -> '1h'; None for anything that is not a timeframe of at most a week."""
    return _canonical(timeframe) if isinstance(timeframe, str) else None


@functools.lru_cache(maxsize=1024)  # a request asks for it three or four times; bounded whatever clients send
def _canonical(timeframe: str) -> str | None:
    text = timeframe.strip().lower()
    m = _PLAIN.fullmatch(text)
    count, unit = (int(m[1]), m[2]) if m else (0, "")
    if m is None and (m := _MT4.fullmatch(text)):
        count, unit = int(m[2]), m[1]
    seconds = count * _UNITS.get(unit, 0)
    if not 0 < seconds <= MAX_TIMEFRAME_S:
        return None
    for name in ("w", "d", "h", "m"):  # the largest unit that divides it exactly
        if seconds % _UNITS[name] == 0:
            return f"{seconds // _UNITS[name]}{name}"
    return None  # pragma: no cover - every count of minutes divides by 60


def timeframe_seconds(timeframe: str) -> int | None:
    """Seconds of a timeframe (any spelling canonical_timeframe takes), or None."""
    canonical = canonical_timeframe(timeframe)
    if canonical is None:
        return None
    return int(canonical[:-1]) * _UNITS[canonical[-1]]


def grid_seconds(seconds: int) -> int:
    """The grid a bar of this length starts on: its own length up to an hour; daily and weekly bars on the
    hour (brokers open the day at 00:00, 21:00 or 22:00 UTC)."""
    return min(seconds, 3_600)


def bar_problem(bar_time: datetime, timeframe: str, now: datetime, expiry: timedelta) -> str | None:
    """Why a bar may not be logged (off the grid, in the future, too old, bad timeframe), or None if it may."""
    seconds = timeframe_seconds(timeframe)
    if seconds is None:
        return f"timeframe {timeframe!r:.20} is not a timeframe such as 1m, 15m, 1h, 4h, 1d or 1w"
    t = bar_time if bar_time.tzinfo else bar_time.replace(tzinfo=UTC)
    epoch = t.timestamp()
    if not math.isfinite(epoch) or epoch % grid_seconds(seconds) != 0:
        return f"bar time {t.isoformat()} is not on the {canonical_timeframe(timeframe)} grid"
    if t > now + timedelta(seconds=seconds):
        return f"bar time {t.isoformat()} is more than one bar in the future"
    if t < now - expiry:
        return f"bar time {t.isoformat()} is older than the outcome expiry ({expiry.total_seconds() / 3600:g} h)"
    return None


def atr_problem(atr: float, inst: Instrument) -> str | None:
    """Why an ATR14 cannot scale a result into R (not finite, or below MIN_ATR_PIPS), or None."""
    if not (_normal(atr) and atr / inst.pip >= MIN_ATR_PIPS):
        return f"ATR14 {atr!r:.24} is below {MIN_ATR_PIPS} pip of {inst.name}"
    return None


def _normal(x: float) -> bool:
    """A finite float at least the smallest normal double (subnormals lose precision and overflow ratios)."""
    return isinstance(x, int | float) and math.isfinite(x) and abs(x) >= sys.float_info.min


# Timeframes the signal metrics name (aifx_signal_*{timeframe}); any other canonical one is "other", so the
# label set stays 12 values whatever clients ask for.
METRIC_TIMEFRAMES = frozenset({"1m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "1w"})
STALL_GRACE = timedelta(minutes=15)  # a backend posts a closed candle within this after the bar closes
# The currency market's weekend: from Friday 21:00 UTC (the summer close) to Sunday 22:00 UTC (the winter open).
_WEEKEND = (timedelta(days=4, hours=21), timedelta(hours=49))


def stall_deadline(bar_time: datetime, timeframe: str) -> datetime:
    """When the bar after bar_time is overdue: its close plus STALL_GRACE, later by the weekend it spans."""
    seconds = timeframe_seconds(timeframe) or 3_600
    t = bar_time if bar_time.tzinfo else bar_time.replace(tzinfo=UTC)
    close = t + timedelta(seconds=seconds)
    due = close + timedelta(seconds=seconds) + STALL_GRACE
    if seconds >= _UNITS["w"]:
        return due  # a weekly bar spans its weekend already
    monday = datetime(close.year, close.month, close.day, tzinfo=UTC) - timedelta(days=close.weekday())
    start, length = _WEEKEND
    for week in (monday - timedelta(days=7), monday):  # the weekend before close (close may lie in it) and after
        closed_from = week + start
        if close < closed_from + length and due > closed_from:
            due += length
    return due
