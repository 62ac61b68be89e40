"""The one trade rule: levels, resolution, pip sizes, the vectorised form and its properties."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx.trade import (
    PIP_SIZES,
    RESULT_CODES,
    TradeRule,
    UnknownPair,
    levels,
    normalise_pair,
    outcomes,
    pip_size,
    resolve,
    side_outcomes,
)

pytestmark = pytest.mark.unit

PIP = 0.0001
ENTRY, ATR = 1.1000, 0.0010  # long: TP 1.1021, SL 1.0990; short: TP 1.0979, SL 1.1010


def quiet(n=12, close=ENTRY):
    """n bars that touch neither barrier: high 1.1005, low 1.0995."""
    return np.full(n, 1.1005), np.full(n, 1.0995), np.full(n, close)


# --- levels ---


def test_long_levels_take_profit_two_atr_plus_one_pip_stop_one_atr():
    lv = levels(ENTRY, ATR, "long", PIP)
    assert lv.take_profit == pytest.approx(1.1021) and lv.stop_loss == pytest.approx(1.0990)
    assert lv.entry == ENTRY and lv.horizon_bars == 12


def test_short_levels_are_mirrored():
    lv = levels(ENTRY, ATR, "short", PIP)
    assert lv.take_profit == pytest.approx(1.0979) and lv.stop_loss == pytest.approx(1.1010)


def test_levels_to_dict_is_the_api_answer():
    d = levels(ENTRY, ATR, "long", PIP).to_dict()
    assert set(d) == {"entry", "take_profit", "stop_loss", "horizon_bars"}
    assert d["horizon_bars"] == 12


def test_levels_follow_the_rule():
    lv = levels(ENTRY, ATR, "long", PIP, TradeRule(take_profit_atr=3.0, stop_loss_atr=0.5, horizon_bars=6))
    assert lv.take_profit == pytest.approx(1.1031) and lv.stop_loss == pytest.approx(1.0995)
    assert lv.horizon_bars == 6


# --- resolve ---


def test_long_take_profit_is_a_hit_exiting_at_take_profit():
    high, low, close = quiet()
    high[3] = 1.1030
    r = resolve("long", ENTRY, ATR, high, low, close, PIP)
    assert r.result == "hit" and r.exit_price == pytest.approx(1.1021)
    assert r.gross_pips == pytest.approx(21.0) and r.pips == pytest.approx(20.0)


def test_long_stop_exits_at_stop_loss():
    high, low, close = quiet()
    low[2] = 1.0980
    high[5] = 1.1030  # take profit after the stop: too late
    r = resolve("long", ENTRY, ATR, high, low, close, PIP)
    assert r.result == "stop" and r.exit_price == pytest.approx(1.0990)
    assert r.gross_pips == pytest.approx(-10.0) and r.pips == pytest.approx(-11.0)


def test_timeout_closes_at_the_close_of_the_last_horizon_bar():
    high, low, close = quiet()
    close[-1] = 1.1004
    close[-2] = 1.0996  # only bar t+12 counts
    r = resolve("long", ENTRY, ATR, high, low, close, PIP)
    assert r.result == "timeout" and r.exit_price == 1.1004
    assert r.gross_pips == pytest.approx(4.0) and r.pips == pytest.approx(3.0)
    s = resolve("short", ENTRY, ATR, high, low, close, PIP)
    assert s.result == "timeout" and s.gross_pips == pytest.approx(-4.0) and s.pips == pytest.approx(-5.0)


def test_a_bar_touching_both_barriers_is_a_stop():
    high, low, close = quiet()
    high[0], low[0] = 1.1030, 1.0980
    assert resolve("long", ENTRY, ATR, high, low, close, PIP).result == "stop"
    assert resolve("short", ENTRY, ATR, high, low, close, PIP).result == "stop"


def test_short_take_profit_and_stop_are_mirrored():
    high, low, close = quiet()
    low[4] = 1.0970
    r = resolve("short", ENTRY, ATR, high, low, close, PIP)
    assert r.result == "hit" and r.exit_price == pytest.approx(1.0979) and r.gross_pips == pytest.approx(21.0)
    high[1] = 1.1010  # touching the stop exactly is a stop
    r = resolve("short", ENTRY, ATR, high, low, close, PIP)
    assert r.result == "stop" and r.gross_pips == pytest.approx(-10.0)


def test_target_after_the_horizon_does_not_count():
    high, low, close = quiet(13)
    high[12] = 1.1030  # bar t+13
    assert resolve("long", ENTRY, ATR, high, low, close, PIP).result == "timeout"
    assert resolve("long", ENTRY, ATR, high, low, close, PIP, TradeRule(horizon_bars=13)).result == "hit"


def test_cost_is_subtracted_from_gross_pips():
    high, low, close = quiet()
    high[0] = 1.1030
    for cost in (0.0, 1.0, 2.5):
        r = resolve("long", ENTRY, ATR, high, low, close, PIP, TradeRule(cost_pips=cost))
        assert r.gross_pips == pytest.approx(21.0) and r.pips == pytest.approx(21.0 - cost)


def test_fewer_bars_than_the_horizon_is_an_error():
    high, low, close = quiet(11)
    with pytest.raises(ValueError, match="12 bars"):
        resolve("long", ENTRY, ATR, high, low, close, PIP)


@pytest.mark.parametrize("atr", [0.0, -0.001, math.nan, math.inf])
def test_atr_must_be_finite_and_positive(atr):
    with pytest.raises(ValueError, match="atr"):
        resolve("long", ENTRY, atr, *quiet(), PIP)


def test_side_must_be_long_or_short():
    with pytest.raises(ValueError, match="side"):
        resolve("hold", ENTRY, ATR, *quiet(), PIP)


def test_jpy_pair_pips():
    pip = pip_size("USD/JPY")
    assert pip == 0.01
    high, low, close = np.full(12, 110.05), np.full(12, 109.95), np.full(12, 110.0)
    high[2] = 110.40
    r = resolve("long", 110.0, 0.10, high, low, close, pip)  # TP 110.0 + 0.20 + 0.01
    assert r.result == "hit" and r.exit_price == pytest.approx(110.21) and r.gross_pips == pytest.approx(21.0)


# --- pip sizes ---


@pytest.mark.parametrize("spelling", ["EUR/USD", "EURUSD", "eur_usd", "eur-usd", " eurusd "])
def test_pair_spellings(spelling):
    assert normalise_pair(spelling) == "EUR/USD"
    assert pip_size(spelling) == 0.0001


def test_table_and_any_jpy_quote():
    assert all(v == (0.01 if k.endswith("/JPY") else 0.0001) for k, v in PIP_SIZES.items())
    for pair in ("GBP/USD", "AUD/NZD", "EUR/CHF", "USD/CAD"):
        assert pip_size(pair) == 0.0001
    for pair in ("gbpjpy", "EUR/JPY", "SGD/JPY", "TRY_JPY"):
        assert pip_size(pair) == 0.01


def test_unknown_pair_says_which_and_how_to_configure():
    with pytest.raises(UnknownPair) as err:
        pip_size("xauusd")
    msg = str(err.value)
    assert "XAU/USD" in msg and "xauusd" in msg and "pip size" in msg and "0.0001" in msg
    assert isinstance(err.value, ValueError)


def test_configured_extra_pairs():
    assert pip_size("XAU/USD", {"XAUUSD": 0.01}) == 0.01
    assert pip_size("EUR/USD", {"eur_usd": 0.00001}) == 0.00001  # configuration wins over the table
    with pytest.raises(ValueError, match="positive"):
        pip_size("XAU/USD", {"XAU/USD": 0.0})


def test_not_a_pair():
    with pytest.raises(UnknownPair, match="BASE/QUOTE"):
        pip_size("EURO")


# --- the vectorised form ---


def test_outcomes_codes_and_undefined_bars():
    n = 40
    high, low, close = np.full(n, 1.1005), np.full(n, 1.0995), np.full(n, ENTRY)
    atr = np.full(n, ATR)
    atr[:3] = np.nan
    high[10] = 1.1030  # within bars t+1..t+12 of every t <= 9: a long hit, a short stopped
    long_codes, short_codes = outcomes(high, low, close, atr, PIP)
    assert np.isnan(long_codes[:3]).all() and np.isnan(long_codes[-12:]).all()
    assert (long_codes[3:10] == RESULT_CODES["hit"]).all() and long_codes[10] == RESULT_CODES["timeout"]
    assert (short_codes[3:10] == RESULT_CODES["stop"]).all()
    assert not np.isnan(long_codes[n - 13])


def test_outcomes_of_a_series_shorter_than_the_horizon_are_undefined():
    codes, pips = side_outcomes("long", *quiet(12), np.full(12, ATR), PIP)
    assert np.isnan(codes).all() and np.isnan(pips).all()


# --- properties ---

BAR = st.tuples(
    st.floats(-0.004, 0.004), st.floats(0.0, 0.003), st.floats(0.0, 1.0)
)  # (mid offset, half range, close position in the range)


def bars_from(spec):
    mid = ENTRY + np.array([b[0] for b in spec])
    half = np.array([b[1] for b in spec])
    high, low = mid + half, mid - half
    return high, low, low + np.array([b[2] for b in spec]) * (high - low)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    atr=st.floats(0.0002, 0.003),
    cost=st.floats(0.0, 3.0),
    spec=st.lists(BAR, min_size=12, max_size=12),
)
def test_resolve_properties(side, atr, cost, spec):
    high, low, close = bars_from(spec)
    rule = TradeRule(cost_pips=cost)
    lv = levels(ENTRY, atr, side, PIP, rule)
    r = resolve(side, ENTRY, atr, high, low, close, PIP, rule)
    sign = 1 if side == "long" else -1
    tp_pips, sl_pips = sign * (lv.take_profit - ENTRY) / PIP, sign * (ENTRY - lv.stop_loss) / PIP
    reached = high >= lv.take_profit if side == "long" else low <= lv.take_profit
    stopped = low <= lv.stop_loss if side == "long" else high >= lv.stop_loss
    hit_before_stop = any(reached[i] and not stopped[: i + 1].any() for i in range(12))
    assert (r.result == "hit") == hit_before_stop
    assert (r.result == "timeout") == (not reached.any() and not stopped.any())
    if r.result in ("hit", "stop"):
        assert -sl_pips - cost - 1e-9 <= r.pips <= tp_pips - cost + 1e-9
    assert r.pips == pytest.approx(r.gross_pips - cost)
    series = [np.concatenate([[ENTRY], a]) for a in (high, low, close)]
    codes, pips = side_outcomes(side, *series, np.full(13, atr), PIP, rule)
    assert codes[0] == RESULT_CODES[r.result] and pips[0] == r.pips and np.isnan(codes[1:]).all()


def test_trade_levels_to_dict_holds_every_field():
    """to_dict is spelled out for speed: it must still name every field (a new field cannot go missing)."""
    import dataclasses

    from aifx.trade import TradeLevels

    got = TradeLevels(1.1, 1.102, 1.099, 12)
    assert got.to_dict() == dataclasses.asdict(got)
