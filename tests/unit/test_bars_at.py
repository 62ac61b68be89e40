"""A batch's bars found together (log_rows.bars_at) are exactly the bars bar_at finds one request at a time.

bars_at checks the price band, ATR14 and bar times as arrays per pair, timeframe and length; every field of
every bar, its problem message included, must be bar_at's, for known and unknown pairs, spellings of
timeframes, too few candles, prices out of the band, flat prices, and bar times on and off the grid, in the
future and past the expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx.candles import Candles
from aifx.serving.log_rows import bar_at, bars_at

NOW = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
EXPIRY = timedelta(hours=48)
PIP_SIZES = {"XAU/USD": 0.01, "eurusd": 0.0001}
PAIRS = ("EUR/USD", "eurusd", "USD/JPY", "XAU/USD", "ABC/DEF", "EUR-USD", "")
TIMEFRAMES = ("1h", "H1", "15m", "1d", "4h", "7x", "0m")
# (last bar time relative to NOW, in seconds): on the hour, off it, a minute off, in the future, too old
OFFSETS = (-3_600, -7_200, -3_660, -3_601, 7_200, 3_600, 0, -EXPIRY.total_seconds() - 3_600, -EXPIRY.total_seconds())
BASES = {"EUR/USD": 1.1, "eurusd": 1.1, "USD/JPY": 150.0, "XAU/USD": 2000.0, "ABC/DEF": 1.0, "EUR-USD": 1.1, "": 1.0}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, Candles]:
    """(pair, timeframe, candles) of one request, from the cases that give each outcome of bar_at."""
    pair, timeframe = draw(st.sampled_from(PAIRS)), draw(st.sampled_from(TIMEFRAMES))
    n = draw(st.sampled_from((0, 1, 14, 15, 16, 64)))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from((1.0, 1.0, 1.0, 1e-4, 1e4)))  # in the band, or below or above it
    volatility = draw(st.sampled_from((1e-3, 1e-3, 0.0, 1e-7)))  # ordinary, flat (ATR 0), too quiet
    offset = draw(st.sampled_from(OFFSETS)) + draw(st.sampled_from((0.0, 0.0, 0.5, 1e-6)))
    rng = np.random.default_rng(seed)
    close = BASES[pair] * scale * np.exp(np.cumsum(rng.normal(0.0, volatility, n)))
    spread = np.abs(rng.normal(0.0, volatility, n)) * close
    last = NOW.replace(minute=0, second=0, microsecond=0) + timedelta(seconds=offset)
    stamps = np.datetime64(last.replace(tzinfo=None), "ns") - np.arange(n)[::-1] * np.timedelta64(3_600, "s")
    return pair, timeframe, Candles(stamps.astype("datetime64[ns]"), close, close + spread, close - spread, close)


@settings(max_examples=300, deadline=None)
@given(st.lists(requests(), min_size=1, max_size=12))
def test_bars_at_finds_what_bar_at_finds_one_by_one(asked: list[tuple[str, str, Candles]]) -> None:
    expected = [bar_at(pair, tf, candles, PIP_SIZES, EXPIRY, NOW) for pair, tf, candles in asked]
    assert bars_at(asked, PIP_SIZES, EXPIRY, NOW) == expected


def test_bars_at_covers_each_outcome() -> None:
    """A bar that may be logged, each problem, and no bar at all, each as bar_at finds it (not a vacuous test)."""
    asked = _examples()
    found = bars_at(asked, PIP_SIZES, EXPIRY, NOW)
    assert found == [bar_at(*r, PIP_SIZES, EXPIRY, NOW) for r in asked]
    problems = [b.problem if b is not None else "no bar" for b in found]
    assert problems[0] is None
    assert "is not on the 1h grid" in str(problems[1])
    assert "more than one bar in the future" in str(problems[2])
    assert "older than the outcome expiry" in str(problems[3])
    assert problems[4] == "no bar"


def _examples() -> list[tuple[str, str, Candles]]:
    """One request for each last bar time, EUR/USD 1h, 64 candles."""
    out = []
    for offset in (-3_600, -3_660, 7_200, -EXPIRY.total_seconds() - 3_600):
        last = NOW.replace(minute=0, second=0, microsecond=0) + timedelta(seconds=offset)
        stamps = np.datetime64(last.replace(tzinfo=None), "ns") - np.arange(64)[::-1] * np.timedelta64(3_600, "s")
        close = 1.1 * np.exp(np.cumsum(np.random.default_rng(1).normal(0.0, 1e-3, 64)))
        out.append(("EUR/USD", "1h", Candles(stamps, close, close * 1.001, close * 0.999, close)))
    out.append(("ABC/DEF", "1h", out[0][2]))
    return out
