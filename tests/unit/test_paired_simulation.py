"""Acceptance simulation of aifx.paired (issue 13): with two null versions the always-valid procedure,
read after every 10 resolved bars, rarely declares a winner; the repeated naive Welch test often does.
It takes ~5 s on 2 vCPU (the time is printed).

The simulator is bench/power.py (the same code produces the table in docs/statistics.md).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from aifx import paired, trade
from aifx.labels import wilder_atr
from bench.power import (
    ATR_PERIOD,
    PIP,
    autocorrelation,
    naive_welch_any,
    sequential,
    simulate_bars,
    simulate_outcomes,
    versions,
)

pytestmark = pytest.mark.unit

RUNS, BARS, SEED = 1000, 2000, 20240613
LIMIT = 0.05 + 2 * np.sqrt(0.05 * 0.95 / RUNS)  # 5 % plus two Monte Carlo standard errors: 0.0638


def test_simulated_r_is_the_trade_rule_in_r() -> None:
    """The vectorised simulation gives what trade.resolve and paired.r_value give bar by bar, at EUR/USD scale."""
    bars, horizon = 300, paired.HORIZON
    got = simulate_outcomes(np.random.default_rng(1), 1, bars)
    high, low, close = (a[0] for a in simulate_bars(np.random.default_rng(1), 1, bars + ATR_PERIOD + horizon))
    atr = wilder_atr(high, low, close, ATR_PERIOD)
    assert 8 < np.median(atr[ATR_PERIOD:]) / PIP < 20  # ATR14 of EUR/USD hours: ~14 pips (bundled 2017 data)
    for t in range(0, bars, 7):
        i = ATR_PERIOD + t
        after = slice(i + 1, i + 1 + horizon)
        for side, r in ((trade.LONG, got.r_long), (trade.SHORT, got.r_short)):
            res = trade.resolve(side, close[i], atr[i], high[after], low[after], close[after], PIP)
            assert r[0, t] == pytest.approx(paired.r_value(side, res.pips, atr[i], PIP), rel=1e-9, abs=1e-12)


def test_null_versions_rarely_declare_a_winner(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    r_a, r_b = versions(rng, simulate_outcomes(rng, RUNS, BARS), oracle_share=0.0)
    diff = r_b - r_a
    verdicts = sequential(diff)
    always_valid = float(np.mean((verdicts.b_better_at > 0) | (verdicts.a_better_at > 0)))
    naive = float(np.mean(naive_welch_any(r_a, r_b, start=paired.MIN_BLOCKS * 2 * paired.HORIZON)))
    seconds = time.perf_counter() - t0
    acf = autocorrelation(diff, (1, 12, 24))
    acf_blocks = autocorrelation(paired.block_means(diff, 2 * paired.HORIZON), (1,))
    with capsys.disabled():
        print(
            f"\n{RUNS} null runs x {BARS} bars, read every 10 bars: always-valid procedure declared a winner in "
            f"{always_valid:.3f} of runs (limit {LIMIT:.4f}); repeated naive Welch p<0.05 in {naive:.3f}; "
            f"diff autocorrelation lag 1/12/24 = {acf[1]:.3f}/{acf[12]:.3f}/{acf[24]:.3f}, "
            f"block means lag 1 = {acf_blocks[1]:.3f}; {seconds:.1f} s"
        )
    assert abs(float(diff.mean())) < 0.01  # the null: no difference on average
    assert acf[1] > 0.2  # overlapping trades of persistent signals: the bars are far from independent
    assert abs(acf_blocks[1]) < 0.05  # ... the 24-bar block means nearly are
    assert always_valid <= LIMIT
    assert naive > always_valid and naive > 0.2  # runtime is printed, not asserted (docs/performance.md)
