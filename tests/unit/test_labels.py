"""Label schemes on hand-built candles whose outcome is known in advance."""

import numpy as np
import pytest

from aifx.labels import BarrierParams, SwingParams, barrier_labels, swing_labels

pytestmark = pytest.mark.unit


def swings(highs, lows, n=2):
    return swing_labels(np.array(highs, float), np.array(lows, float), SwingParams(n))


def test_swing_high_and_low_with_direction():
    lab = swings([1, 2, 5, 2, 1, 2, 3], [0.5, 1, 4, 1, 0.2, 1, 2])
    # bar 2: high 5 beats bars 0,1,3,4 -> swing high -> short; bar 4: low 0.2 -> swing low -> long
    assert lab.stage1[2] == 1 and lab.stage2[2] == 0
    assert lab.stage1[4] == 1 and lab.stage2[4] == 1
    assert lab.stage1[3] == 0 and np.isnan(lab.stage2[3])


def test_ties_are_not_swings():
    lab = swings([1, 2, 5, 5, 1, 2, 3], [3, 3, 3, 3, 3, 3, 3])
    assert lab.stage1[2] == 0 and lab.stage1[3] == 0  # equal highs: neither is strictly greater


def test_edges_without_n_bars_on_each_side_are_undefined():
    lab = swings([1, 2, 5, 2, 1, 2, 3], [1] * 7)
    assert np.isnan(lab.stage1[:2]).all() and np.isnan(lab.stage1[-2:]).all()
    assert not np.isnan(lab.stage1[2:-2]).any()


def test_outside_bar_is_a_reversal_without_direction():
    lab = swings([1, 1, 9, 1, 1], [1, 1, 0.1, 1, 1])
    assert lab.stage1[2] == 1 and np.isnan(lab.stage2[2])


# Flat market: every bar opens and closes at 1.0 with range 0.001, so ATR(14) = 0.001 exactly
# where it is defined. A long at bar T wins at High >= 1.0021 (2 ATR + 1 pip) unless Low <= 0.999
# comes first; a short wins at Low <= 0.9979 unless High >= 1.001 comes first.
T = 20


def flat(n=40):
    return np.full(n, 1.0005), np.full(n, 0.9995), np.full(n, 1.0)


def barrier(high, low, close, **kw):
    return barrier_labels(high, low, close, BarrierParams(**kw))


def test_long_take_profit_first_is_a_long_win():
    high, low, close = flat()
    high[T + 3] = 1.0030
    lab = barrier(high, low, close)
    assert lab.stage1[T] == 1 and lab.stage2[T] == 1


def test_short_take_profit_first_is_a_short_win():
    high, low, close = flat()
    low[T + 4] = 0.9970
    lab = barrier(high, low, close)
    assert lab.stage1[T] == 1 and lab.stage2[T] == 0


def test_stop_before_target_is_a_loss():
    high, low, close = flat()
    low[T + 2] = 0.9985  # long stop (0.999) hit, short target (0.9979) not reached
    high[T + 5] = 1.0030  # long target later, too late; short stop (1.001) hit
    lab = barrier(high, low, close)
    assert lab.stage1[T] == 0 and np.isnan(lab.stage2[T])


def test_bar_touching_both_barriers_is_a_loss():
    high, low, close = flat()
    high[T + 1], low[T + 1] = 1.0030, 0.9985
    lab = barrier(high, low, close)
    assert lab.stage1[T] == 0


def test_cost_moves_the_target():
    high, low, close = flat()
    high[T + 1] = 1.00205  # beyond 2 ATR (1.002) but short of 2 ATR + 1 pip (1.0021)
    assert barrier(high, low, close).stage1[T] == 0
    assert barrier(high, low, close, cost=0.0).stage1[T] == 1


def test_target_after_the_horizon_does_not_count():
    high, low, close = flat()
    high[T + 13] = 1.0030
    assert barrier(high, low, close).stage1[T] == 0
    assert barrier(high, low, close, horizon_bars=13).stage1[T] == 1


def test_last_bars_without_a_full_horizon_are_undefined():
    high, low, close = flat(40)
    lab = barrier(high, low, close)
    assert np.isnan(lab.stage1[-12:]).all()
    assert not np.isnan(lab.stage1[-13])


def test_atr_warm_up_bars_are_undefined():
    high, low, close = flat(40)
    lab = barrier(high, low, close)
    assert np.isnan(lab.stage1[:14]).all()  # Wilder ATR(14) first defined at bar 14
    assert lab.stage1[14] == 0
