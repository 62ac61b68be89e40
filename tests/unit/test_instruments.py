"""Issue 25: the instrument table, canonical timeframes and the bar rules the outcome loop logs by."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifx import instruments as ins

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 10, 17, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.mark.parametrize(
    "given_, canonical",
    [("1h", "1h"), ("1H", "1h"), (" h1 ", "1h"), ("60m", "1h"), ("H4", "4h"), ("240m", "4h"), ("15m", "15m"),
     ("M15", "15m"), ("1d", "1d"), ("24h", "1d"), ("D1", "1d"), ("7d", "1w"), ("1w", "1w"), ("90m", "90m")],
)  # fmt: skip
def test_timeframes_have_one_spelling(given_: str, canonical: str) -> None:
    assert ins.canonical_timeframe(given_) == canonical


@pytest.mark.parametrize("bad", ["", "h", "0h", "1y", "2w", "1h1", "1 h", "hourly", "1mo", "99999m", "-1h"])
def test_what_is_no_timeframe_is_none(bad: str) -> None:
    assert ins.canonical_timeframe(bad) is None and ins.timeframe_seconds(bad) is None


def test_the_table_knows_pairs_in_any_spelling_and_nothing_else() -> None:
    assert ins.instrument("eurusd") == ins.Instrument("EUR/USD", 0.0001)
    assert ins.instrument("USD-JPY") == ins.Instrument("USD/JPY", 0.01)
    assert ins.instrument("XAU/USD") is None and ins.instrument("AAA/JPY") is None  # no wildcard
    assert ins.instrument("junk") is None
    assert ins.instrument("xau_usd", {"XAU/USD": 0.1}) == ins.Instrument("XAU/USD", 0.1)


def test_the_band_refuses_scaled_subnormal_and_non_finite_prices() -> None:
    eur = ins.Instrument("EUR/USD", 0.0001)
    assert eur.plausible(1.0528) and eur.plausible(0.53)  # halved prices are still a price
    for bad in (1.0528e-6, 1e-310, 1052.8, math.inf, math.nan, -1.05, 0.0):
        assert not eur.plausible(bad), bad
    jpy = ins.Instrument("USD/JPY", 0.01)
    assert jpy.plausible(151.3) and not jpy.plausible(1.05)


def test_a_bar_must_be_on_its_grid_near_now_and_not_older_than_the_expiry() -> None:
    on = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert ins.bar_problem(on, "1h", NOW, WEEK) is None
    assert "grid" in (ins.bar_problem(on.replace(minute=30), "1h", NOW, WEEK) or "")
    assert ins.bar_problem(on.replace(minute=30), "15m", NOW, WEEK) is None
    assert ins.bar_problem(NOW.replace(minute=0) + timedelta(hours=1), "1h", NOW, WEEK) is None  # clock skew
    assert "future" in (ins.bar_problem(NOW.replace(minute=0) + timedelta(hours=2), "1h", NOW, WEEK) or "")
    assert "older" in (ins.bar_problem(on - timedelta(days=8), "1h", NOW, WEEK) or "")
    assert "older" in (ins.bar_problem(datetime(1970, 1, 1, tzinfo=UTC), "1h", NOW, WEEK) or "")
    assert ins.bar_problem(datetime(2026, 12, 1, 22, tzinfo=UTC), "1d", NOW, WEEK) is None  # a 22:00 broker day
    assert "timeframe" in (ins.bar_problem(on, "1y", NOW, WEEK) or "")


def test_atr_below_half_a_pip_cannot_scale_r() -> None:
    eur = ins.Instrument("EUR/USD", 0.0001)
    assert ins.atr_problem(0.0008, eur) is None
    for bad in (0.00004, 1e-310, math.nan, math.inf, 0.0):
        assert ins.atr_problem(bad, eur) is not None, bad


@given(st.integers(min_value=1, max_value=10_080), st.sampled_from(["m", "h", "d", "w"]))
def test_canonical_is_a_fixed_point_that_keeps_the_length(count: int, unit: str) -> None:
    name = f"{count}{unit}"
    canonical = ins.canonical_timeframe(name)
    seconds = count * {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}[unit]
    if seconds > ins.MAX_TIMEFRAME_S or count > 9999:
        assert canonical is None
    else:
        assert canonical is not None and ins.canonical_timeframe(canonical) == canonical
        assert ins.timeframe_seconds(canonical) == seconds


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["1m", "5m", "15m", "1h", "4h", "1d"]))
def test_only_grid_times_pass(minutes: int, timeframe: str) -> None:
    t = NOW - timedelta(minutes=minutes)
    seconds = ins.timeframe_seconds(timeframe)
    assert seconds is not None
    problem = ins.bar_problem(t, timeframe, NOW, timedelta(days=10_000))
    on_grid = int(t.timestamp()) % ins.grid_seconds(seconds) == 0
    assert (problem is None) == on_grid
