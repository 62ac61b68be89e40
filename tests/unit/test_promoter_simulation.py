"""The acceptance simulation of the promoter (bench.promoter_sim), shorter and with looser bounds: one year of
hourly GARCH-t bars per run, the promoter's passes through aifx.anchored and aifx.promotion."""

from __future__ import annotations

import pytest

from bench import promoter_sim as sim

pytestmark = pytest.mark.unit


def test_null_challengers_are_rarely_promoted_and_a_clearly_better_one_is_promoted_and_kept() -> None:
    gain = sim.oracle_gain(7, runs=4)
    assert 0.8 < gain < 1.3  # R gained per bar by taking the winning side: ~1.05 on these prices
    null = sim.scenario(2601, 80, 0.0, gain, workers=1, bars=sim.YEAR)
    # 5 % is the guarantee over a life; 80 runs: 5 % + 3 Monte Carlo standard errors is ~12.5 %
    assert null.any_promotion <= 0.125 and null.power_year == 0.0
    better = sim.scenario(2602, 40, 0.2, gain, workers=1, bars=sim.YEAR)
    assert better.power_year >= 0.8 and better.power_by_month[-1] <= better.power_year
    assert better.rolled_back <= 0.15 and better.null_promotion <= 0.15
    assert better.power_90d <= better.power_year


def test_zero_drift_psi_alerts_on_held_out_candles_are_rare_and_doubled_returns_alert() -> None:
    """bench.promoter_sim's drift line, for v3.1 only (bench.drift_alerts): held-out sixths of the bundled candles
    served through aifx.drift's windows against references calibrated on the other five sixths. The target is
    1 % of window reads (measured 0.0 % for v3.1 with cross-fitted thresholds, 1.5 % in-sample before:
    one regime, January-February 2017); bound 3 %."""
    from bench import drift_alerts

    candles = drift_alerts.load()
    zero = drift_alerts.held_out(candles, "v3.1")
    assert zero.judged > 4000 and zero.rate <= 0.03
    assert zero.old_rate > 0.1  # the fixed PSI 0.25 of independent rows alarms on the same reads
    doubled = drift_alerts.held_out(candles, "v3.1", factor=2.0)
    assert doubled.rate > 10 * zero.rate and doubled.blocks_alerted >= 3
