"""The quick candle check agrees with the row-by-row one: it passes exactly the candles that have no bad row."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx import candles
from aifx.candles import PRICE_RATIO, CandleDataError, plausible_rows, validate_ohlc

pytestmark = pytest.mark.unit

# Values near every edge the checks draw: zero and negative prices, NaN and infinities, equal prices, a
# price right at 10x the median, and otherwise ordinary quotes.
EDGY = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf, 1e-300, 0.1, 1.0, 10.0, 10.000001, 100.0])
PRICE = st.one_of(st.floats(min_value=0.5, max_value=2.0), EDGY)


@st.composite
def candle_sets(draw: st.DrawFn, n: int | None = None) -> tuple[np.ndarray, ...]:
    """timestamp, open, high, low, close and volume (or None): mostly good candles, with a few edgy values."""
    n = draw(st.integers(0, 12)) if n is None else n
    close = np.array(draw(st.lists(st.floats(min_value=0.9, max_value=1.1), min_size=n, max_size=n)))
    open_ = np.array(draw(st.lists(st.floats(min_value=0.9, max_value=1.1), min_size=n, max_size=n)))
    high, low = np.maximum(open_, close) + 0.01, np.minimum(open_, close) - 0.01
    cols = [open_, high, low, close]
    for _ in range(draw(st.integers(0, 3)) if n else 0):
        col, row = draw(st.integers(0, 3)), draw(st.integers(0, n - 1))
        cols[col][row] = draw(PRICE)
    steps = draw(st.lists(st.sampled_from([3600, 3600, 3600, 60, 0, -3600]), min_size=n, max_size=n))
    stamps = (np.datetime64("2020-01-01T00:00:00", "ns") + np.cumsum(steps).astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )
    volume = draw(st.one_of(st.none(), st.just(np.abs(close)), st.just(np.where(close > 1.0, np.nan, 1.0))))
    return stamps, *cols, volume


def passes_row_by_row(stamps, open_, high, low, close, volume, max_ratio) -> bool:
    """validate_ohlc's own checks, one by one (the quick check told to fail, so they all run)."""
    try:
        with mock.patch.object(candles, "_plausible", return_value=False):
            validate_ohlc(stamps, open_, high, low, close, volume, max_ratio=max_ratio)
    except CandleDataError:
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(candle_sets(), st.sampled_from([None, PRICE_RATIO, 1.05]))
def test_the_quick_check_passes_exactly_what_the_row_by_row_check_passes(data, max_ratio) -> None:
    stamps, open_, high, low, close, volume = data
    quick = candles._plausible(open_, high, low, close, volume, stamps, max_ratio)
    assert quick == passes_row_by_row(stamps, open_, high, low, close, volume, max_ratio)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.lists(candle_sets(n), min_size=1, max_size=5)),
       st.sampled_from([None, PRICE_RATIO]))  # fmt: skip
def test_stacked_sets_get_each_set_s_own_verdict(sets, max_ratio) -> None:
    stacked = [np.stack([s[k] for s in sets]) for k in range(5)]
    rows = plausible_rows(*stacked, max_ratio).tolist()
    assert rows == [candles._plausible(o, h, lo, c, None, t, max_ratio) for t, o, h, lo, c, _ in sets]


def test_a_bad_value_anywhere_fails_the_quick_check() -> None:
    t = np.arange(4).astype("datetime64[h]").astype("datetime64[ns]")
    good = [np.full(4, 1.0), np.full(4, 1.1), np.full(4, 0.9), np.full(4, 1.0)]
    for ratio in (PRICE_RATIO, None):
        assert candles._plausible(*good, None, t, ratio)
        for col in range(4):
            for value in (np.nan, np.inf, 0.0, -1.0, *((20.0, 0.01) if ratio else ())):
                bad = [c.copy() for c in good]
                bad[col][2] = value
                assert not candles._plausible(*bad, None, t, ratio), (col, value, ratio)
        assert not candles._plausible(*good, None, t[::-1].copy(), ratio)
        assert not candles._plausible(*good, None, np.repeat(t[:2], 2), ratio)
        for volume in ([1.0, -1.0, 1.0, 1.0], [1.0, np.inf, 1.0, 1.0], [np.nan, 1.0, 1.0, 1.0]):
            assert not candles._plausible(*good, np.array(volume), t, ratio)
        assert candles._plausible(*good, np.zeros(4), t, ratio)
