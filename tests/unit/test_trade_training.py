"""The one trade rule against training: it reproduces the labels on the data file, the backtest uses it."""

from pathlib import Path

import numpy as np
import pytest

from aifx.candles import Candles
from aifx.labels import BarrierParams, barrier_labels, barrier_outcomes, wilder_atr
from aifx.trade import RESULT_CODES, TradeRule, resolve, side_outcomes
from training.backtest import backtest, rule_text
from training.candles_csv import load_candles_csv

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data" / "FOREX_EURUSD_1H_ASK.csv"
PIP = 0.0001


def resolve_every_bar(side, high, low, close, atr, pip, rule):
    """resolve() bar by bar: (codes, pips), NaN where it refuses the bar."""
    codes, pips = np.full(len(close), np.nan), np.full(len(close), np.nan)
    n = rule.horizon_bars
    for t in range(len(close) - n):
        if not (np.isfinite(atr[t]) and atr[t] > 0):
            continue
        after = slice(t + 1, t + 1 + n)
        r = resolve(side, close[t], atr[t], high[after], low[after], close[after], pip, rule)
        codes[t], pips[t] = RESULT_CODES[r.result], r.pips
    return codes, pips


# --- the bundled data file: the one rule reproduces the training labels ---


def old_first_touch(target, stop):
    """The label code before aifx.trade: 1.0 if target is touched strictly before stop."""
    hit_t = np.flatnonzero(target)
    if hit_t.size == 0:
        return 0.0
    hit_s = np.flatnonzero(stop)
    return float(hit_s.size == 0 or hit_t[0] < hit_s[0])


def old_barrier_outcomes(high, low, close, atr, p):
    """aifx.labels.barrier_outcomes as it was before aifx.trade, kept as the reference."""
    size = len(close)
    long_win = np.full(size, np.nan)
    short_win = np.full(size, np.nan)
    for t in range(size - p.horizon_bars):
        if not np.isfinite(atr[t]):
            continue
        long_win[t] = old_first_touch(
            high[t + 1 : t + 1 + p.horizon_bars] >= close[t] + p.take_profit_atr * atr[t] + p.cost,
            low[t + 1 : t + 1 + p.horizon_bars] <= close[t] - p.stop_loss_atr * atr[t],
        )
        short_win[t] = old_first_touch(
            low[t + 1 : t + 1 + p.horizon_bars] <= close[t] - p.take_profit_atr * atr[t] - p.cost,
            high[t + 1 : t + 1 + p.horizon_bars] >= close[t] + p.stop_loss_atr * atr[t],
        )
    return long_win, short_win


def differences(a, b):
    """Bars where two label arrays differ; NaN equals NaN only."""
    return int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b)))))


@pytest.fixture(scope="module")
def candles():
    return load_candles_csv(DATA)


def test_the_trade_rule_reproduces_the_training_labels_on_the_whole_data_file(candles):
    p = BarrierParams()
    atr = wilder_atr(candles.high, candles.low, candles.close, p.atr_period)
    old_long, old_short = old_barrier_outcomes(candles.high, candles.low, candles.close, atr, p)
    new_long, new_short = barrier_outcomes(candles.high, candles.low, candles.close, atr, p)
    assert differences(new_long, old_long) == 0 and differences(new_short, old_short) == 0
    assert (np.isnan(new_long) == np.isnan(old_long)).all() and (np.isnan(new_short) == np.isnan(old_short)).all()
    old_stage1 = np.where(np.isnan(old_long), np.nan, np.maximum(old_long, old_short))
    old_stage2 = np.where(old_stage1 == 1.0, old_long, np.nan)
    labels = barrier_labels(candles.high, candles.low, candles.close, p)
    assert differences(labels.stage1, old_stage1) == 0 and differences(labels.stage2, old_stage2) == 0
    assert np.nansum(labels.stage1) > 1000 and np.isnan(labels.stage1).sum() == 26  # 14 warm-up + 12 at the end


def test_resolve_on_every_bar_agrees_with_outcomes(candles):
    rule = BarrierParams().trade_rule()
    atr = wilder_atr(candles.high, candles.low, candles.close, 14)
    for side in ("long", "short"):
        codes, pips = side_outcomes(side, candles.high, candles.low, candles.close, atr, PIP, rule)
        ref_codes, ref_pips = resolve_every_bar(side, candles.high, candles.low, candles.close, atr, PIP, rule)
        assert differences(codes, ref_codes) == 0 and differences(pips, ref_pips) == 0
        assert set(np.unique(codes[~np.isnan(codes)])) == {-1.0, 0.0, 1.0}


def test_barrier_params_metadata_is_unchanged():
    assert BarrierParams().to_dict() == {
        "scheme": "triple_barrier",
        "atr_period": 14,
        "take_profit_atr": 2.0,
        "stop_loss_atr": 1.0,
        "horizon_bars": 12,
        "cost": 0.0001,
    }
    assert BarrierParams().trade_rule() == TradeRule()


def test_backtest_resolves_every_trade_with_the_rule(candles):
    p, atr = BarrierParams(), wilder_atr(candles.high, candles.low, candles.close, 14)
    bars, sides = np.array([100, 200, 300, len(candles) - 5]), np.array([1, -1, 1, -1])
    out = backtest(candles, bars, sides, p, 2.0)
    expected = [
        resolve("long" if s > 0 else "short", candles.close[b], atr[b], candles.high[b + 1 : b + 13],
                candles.low[b + 1 : b + 13], candles.close[b + 1 : b + 13], PIP, TradeRule(cost_pips=2.0)).pips
        for b, s in zip(bars[:3], sides[:3], strict=True)
    ]  # fmt: skip
    assert out["trades"] == 3 and out["longs"] == 2 and out["shorts"] == 1  # the last bar lacks 12 bars after it
    assert out["total_pips"] == round(sum(expected), 3)


def constructed_candles():
    """90 quiet bars around 1.1000 (range 10 pips, ATR14 about 10 pips) with three trades laid in:
    a long at bar 20 reaching TP (spike up at 21), a long at 40 stopped (spike down at 41), and a
    short at 60 that times out 3 pips in profit (bars 61..72 close at 1.0997)."""
    n = 90
    close = np.full(n, 1.1000)
    high, low = close + 0.0005, close - 0.0005
    high[21] = 1.1100
    low[41] = 1.0900
    close[61:73] = 1.0997
    return Candles(np.arange(n).astype("datetime64[h]").astype("datetime64[ns]"), close.copy(), high, low, close)


def test_backtest_counts_results_and_take_profit_rate():
    c = constructed_candles()
    bars, sides = np.array([20, 40, 60, 85]), np.array([1, 1, -1, 1])  # bar 85 lacks 12 bars after it
    out = backtest(c, bars, sides, BarrierParams(), 1.0)
    assert out["trades"] == 3
    assert (out["hits"], out["stops"], out["timeouts"]) == (1, 1, 1)
    assert out["hits"] + out["stops"] + out["timeouts"] == out["trades"]
    assert out["take_profit_rate"] == round(out["hits"] / out["trades"], 6)
    assert out["positive_rate"] == round(2 / 3, 6)  # the hit and the timeout closed 2 pips up after cost
    assert out["hit_rate"] == out["positive_rate"]  # the old key, kept for old readers
    assert out["take_profit_rate"] != out["positive_rate"]


def test_backtest_without_trades_has_no_rates():
    out = backtest(constructed_candles(), np.array([85]), np.array([1]), BarrierParams(), 1.0)
    assert out["trades"] == 0 and (out["hits"], out["stops"], out["timeouts"]) == (0, 0, 0)
    assert out["take_profit_rate"] is None and out["positive_rate"] is None and out["hit_rate"] is None


def test_rule_text_is_built_from_the_rule():
    text = rule_text(BarrierParams().trade_rule())
    assert "TP 2.0xATR14 + 1 pip, SL 1.0xATR14, a bar touching both is SL, else close of bar t+12" in text
    text = rule_text(TradeRule(take_profit_atr=3.0, stop_loss_atr=1.5, horizon_bars=6, take_profit_extra_pips=0))
    assert "TP 3.0xATR14, SL 1.5xATR14" in text and "t+6" in text and "without 6 bars" in text
