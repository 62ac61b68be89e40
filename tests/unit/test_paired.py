"""aifx.paired: R per bar and the bars left out, Newey-West against statsmodels, PR-AUC against sklearn,
the confidence sequence, the states and JSON-safe summaries."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from sklearn.metrics import average_precision_score

from aifx.paired import (
    A_BETTER,
    B_BETTER,
    B_BETTER_BELOW_MIN_EFFECT,
    COLLECTING,
    GUARDRAIL_BREACH,
    HORIZON,
    MIN_BLOCKS,
    NO_MEANINGFUL_DIFFERENCE,
    average_precision,
    bar_r,
    block_means,
    brier_score,
    compare,
    comparison_state,
    confidence_sequence,
    default_lag,
    max_drawdown_r,
    mixture_margin,
    mixture_rho2,
    newey_west_se,
    paired_rows,
    r_value,
)

pytestmark = pytest.mark.unit

ATR, PIP = 0.0010, 0.0001  # ATR of 10 pips: 1 R = 10 pips
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ar1(n: int, phi: float = 0.6, seed: int = 7) -> np.ndarray:
    """A fixed AR(1) series with a nonzero mean."""
    rng = np.random.default_rng(seed)
    e, x = rng.normal(size=n), np.empty(n)
    x[0] = e[0]
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x + 0.3


def row(i: int, a: dict[str, Any], b: dict[str, Any], atr: float = ATR) -> dict[str, Any]:
    """A row shaped like EvaluationStore.paired()'s (versions nested under 'a' and 'b')."""
    base = {"signal": "hold", "result": None, "pips": None, "p_reversal": None, "label_held": None}
    return {"bar_id": i, "pair": "EURUSD", "timeframe": "1h", "bar_time": T0 + timedelta(hours=i), "atr": atr,
            "pip": PIP, "a": base | a, "b": base | b}  # fmt: skip


def strict_json(value: Any) -> Any:
    """Round trip through JSON refusing NaN and infinity."""
    return json.loads(json.dumps(value, allow_nan=False, default=str))


# -- R per bar -----------------------------------------------------------------------------------


def test_r_value_is_pips_after_cost_over_atr_in_pips() -> None:
    assert r_value("long", 20.0, ATR, PIP) == pytest.approx(2.0)
    assert r_value("short", -11.0, ATR, PIP) == pytest.approx(-1.1)
    assert r_value("long", 7.5, 0.5, 0.01) == pytest.approx(0.15)  # JPY: ATR 50 pips
    assert r_value("hold", 20.0, ATR, PIP) == 0.0
    assert r_value("long", None, ATR, PIP) == 0.0  # a missing result
    assert r_value(None, None, ATR, PIP) == 0.0
    assert r_value("long", math.nan, ATR, PIP) == 0.0
    with pytest.raises(ValueError):
        r_value("long", 5.0, 0.0, PIP)


def test_paired_rows_keeps_order_and_takes_nested_or_flat_rows() -> None:
    rows = [
        row(0, {"signal": "long", "pips": 20.0}, {"signal": "short", "pips": -11.0}),
        row(1, {"signal": "hold"}, {"signal": "long", "pips": 5.0}),
        row(2, {"signal": "short", "pips": 9.0}, {"signal": "hold"}, atr=0.0030),
    ]
    got = paired_rows(rows)
    assert got.r_a.tolist() == pytest.approx([2.0, 0.0, 0.3])
    assert got.r_b.tolist() == pytest.approx([-1.1, 0.5, 0.0])
    assert got.diff.tolist() == pytest.approx([-3.1, 0.5, -0.3])
    flat = [{k: v for k, v in r.items() if k not in ("a", "b")} | {f"{s}_{f}": r[s][f] for s in "ab" for f in r[s]}
            for r in rows]  # fmt: skip
    assert paired_rows(flat).diff.tolist() == got.diff.tolist()
    assert paired_rows([]).diff.shape == (0,)


def test_bars_with_a_tiny_atr_or_an_absurd_r_are_left_out_and_counted() -> None:
    assert bar_r(row(0, {"signal": "long", "pips": 20.0}, {})) == (pytest.approx(2.0), 0.0, None)
    assert bar_r(row(0, {"signal": "long", "pips": 1e300}, {}, atr=1e-310))[2] == "atr_below_min"  # 1e-306 pips
    assert bar_r(row(0, {}, {}, atr=0.0))[2] == "atr_below_min"  # even when both hold
    assert bar_r(row(0, {"signal": "long", "pips": 1e300}, {}))[2] == "r_beyond_max"  # 1e299 R
    assert bar_r(row(0, {}, {"signal": "short", "pips": -201.0}))[2] == "r_beyond_max"  # -20.1 R
    assert bar_r(row(0, {}, {"signal": "short", "pips": -200.0}))[2] is None  # -20 R is kept
    assert bar_r(row(0, {}, {"signal": "long", "pips": 1.5e308}, atr=0.00006))[2] == "r_not_finite"  # overflow
    assert bar_r(row(0, {}, {}, atr=math.nan))[2] == "atr_invalid"
    assert bar_r(row(0, {}, {}) | {"atr": None})[2] == "atr_invalid"
    assert bar_r(row(0, {}, {}) | {"pip": 0.0})[2] == "atr_invalid"


def test_compare_leaves_excluded_bars_out_of_every_figure() -> None:
    rng = np.random.default_rng(8)
    good = []
    for i in range(600):
        a = {"signal": "long", "pips": float(rng.normal(1, 15)), "result": str(rng.choice(["hit", "stop"])),
             "p_reversal": float(rng.random()), "label_held": bool(rng.random() < 0.4)}  # fmt: skip
        b = {"signal": "short", "pips": float(rng.normal(2, 15)), "result": "hit", "p_reversal": 0.7,
             "label_held": True}  # fmt: skip
        good.append(row(i, a, b))
    broken = {"signal": "long", "pips": 1e300, "result": "hit", "p_reversal": 0.1, "label_held": False}
    bad = [
        row(600, broken, {"signal": "short", "pips": -11.0, "result": "stop"}, atr=1e-310),
        row(601, {"signal": "short", "pips": 5.0}, broken),
        row(602, {}, {"signal": "long", "pips": 1.5e308}, atr=0.00006),
        row(603, broken | {"pips": 3.0}, {}, atr=math.inf),
    ]
    got, ref = compare(good + bad), compare(good)
    assert strict_json(got) == got
    assert got["excluded"] == {"bars": 4, "atr_invalid": 1, "atr_below_min": 1, "r_not_finite": 1,
                               "r_beyond_max": 1, "min_atr_pips": 0.5, "max_abs_r": 20.0}  # fmt: skip
    assert {k: v for k, v in got.items() if k != "excluded"} == {k: v for k, v in ref.items() if k != "excluded"}
    assert got["n_bars"] == 600 and abs(got["max_drawdown_r"]["a"]) < 600 * 20
    assert got["hit_rates"]["both_signalled"] == 600 and got["stage1"]["a"]["n"] == 600
    mixed = compare(good[:300] + bad + good[300:])
    assert mixed["n_bars"] == 600 and mixed["mean_diff"] == pytest.approx(ref["mean_diff"], rel=1e-12)


# -- Newey-West ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lag", [0, 1, 3, 12, 24, 60])
def test_newey_west_equals_statsmodels_hac(lag: int) -> None:
    x = ar1(600)
    ref = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": lag}).bse[0]
    assert newey_west_se(x, lag) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_newey_west_default_lag_is_at_least_twice_the_horizon() -> None:
    assert HORIZON == 12
    assert default_lag(100) == 24 and default_lag(1000) == 24 and default_lag(100_000) == 24
    assert math.floor(4 * 1000 ** (2 / 9)) == 18  # the usual rule alone would under-cover 12-bar trades
    assert default_lag(10**6) == math.floor(4 * 10_000 ** (2 / 9)) == 30  # ... until the sample is huge
    assert default_lag(50, horizon=3) == 6 and default_lag(50, horizon=36) == 72
    x = ar1(2000)
    ref = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": 24}).bse[0]
    assert newey_west_se(x) == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_newey_west_lag_zero_is_the_plain_standard_error_and_short_input_is_nan() -> None:
    x = np.array([1.0, 2.0, 4.0, 7.0])
    assert newey_west_se(x, 0) == pytest.approx(np.std(x) / 2.0)
    assert newey_west_se(x, 10) == pytest.approx(  # a lag past the end adds nothing beyond n - 1
        sm.OLS(x, np.ones(4)).fit(cov_type="HAC", cov_kwds={"maxlags": 10}).bse[0], rel=1e-9
    )
    assert math.isnan(newey_west_se([1.0]))


# -- confidence sequence and states --------------------------------------------------------------


def test_mixture_rho2_minimises_the_margin_at_the_expected_sample_size() -> None:
    r2 = mixture_rho2(200, 0.05)
    u = r2 * 200
    assert u == pytest.approx(-2 * math.log(0.05) + math.log1p(u), rel=1e-12)
    assert u == pytest.approx(-2 * math.log(0.05) + math.log(1 - 2 * math.log(0.05)), rel=0.05)  # the paper's approx
    grid = np.geomspace(r2 / 4, r2 * 4, 401)
    assert grid[np.argmin([mixture_margin(200.0, 0.05, g) for g in grid])] == pytest.approx(r2, rel=0.01)
    assert 1.96 < mixture_margin(200.0, 0.05, r2) * math.sqrt(200) < 3.2  # wider than a fixed-n interval


def test_confidence_sequence_by_hand() -> None:
    means = np.array([0.5, -0.25, 1.0, 0.0, 0.75])
    diff = np.repeat(means, 24)
    diff = np.concatenate([diff, [99.0] * 23])  # a partial block is left out
    low, high, blocks = confidence_sequence(diff, horizon=12, alpha=0.05, expected_bars=240)
    k, rho2 = 5, mixture_rho2(10, 0.05)
    half = np.std(means, ddof=1) * math.sqrt(
        2 * (k * rho2 + 1) / (k * k * rho2) * math.log(math.sqrt(k * rho2 + 1) / 0.05)
    )
    assert blocks == 5
    assert (low, high) == (pytest.approx(means.mean() - half), pytest.approx(means.mean() + half))
    assert block_means(diff, 24).tolist() == means.tolist()
    assert confidence_sequence(np.ones(47)) == (None, None, 1)
    assert confidence_sequence([]) == (None, None, 0)


def test_confidence_sequence_narrows_around_a_planted_difference() -> None:
    rng = np.random.default_rng(3)
    diff = rng.normal(0.2, 1.0, 20_000)
    widths = []
    for n in (1_000, 5_000, 20_000):
        low, high, _ = confidence_sequence(diff[:n])
        assert low is not None and high is not None and low < 0.2 < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    assert compare_state_of(diff) == B_BETTER
    assert compare_state_of(-diff) == A_BETTER


def compare_state_of(diff: np.ndarray) -> str:
    low, high, blocks = confidence_sequence(diff)
    return comparison_state(low, high, blocks)


@pytest.mark.parametrize(
    ("low", "high", "blocks", "kwargs", "state"),
    [
        (0.06, 0.3, MIN_BLOCKS, {}, B_BETTER),  # rules out every effect up to the minimum
        (0.01, 0.3, MIN_BLOCKS, {}, B_BETTER_BELOW_MIN_EFFECT),  # better, not yet by the minimum effect
        (0.05, 0.3, MIN_BLOCKS, {}, B_BETTER_BELOW_MIN_EFFECT),  # the bound itself is not above it
        (0.01, 0.04, MIN_BLOCKS, {}, NO_MEANINGFUL_DIFFERENCE),  # surely better, but surely by less than it
        (-0.3, -0.01, MIN_BLOCKS, {}, A_BETTER),
        (-0.04, -0.01, MIN_BLOCKS, {}, NO_MEANINGFUL_DIFFERENCE),
        (-0.04, 0.04, MIN_BLOCKS, {}, NO_MEANINGFUL_DIFFERENCE),
        (-0.04, 0.06, MIN_BLOCKS, {}, COLLECTING),
        (0.11, 0.3, MIN_BLOCKS, {"min_effect": 0.1}, B_BETTER),
        (0.09, 0.3, MIN_BLOCKS, {"min_effect": 0.1}, B_BETTER_BELOW_MIN_EFFECT),
        (-0.2, 0.2, 500, {}, COLLECTING),
        (0.5, 0.9, MIN_BLOCKS - 1, {}, COLLECTING),  # too early to decide
        (-0.09, 0.09, MIN_BLOCKS, {"min_effect": 0.1}, NO_MEANINGFUL_DIFFERENCE),
        (0.5, 0.9, 3, {"min_blocks": 3}, B_BETTER),
        (0.02, 0.9, 3, {"min_blocks": 3}, B_BETTER_BELOW_MIN_EFFECT),
        (None, None, 0, {}, COLLECTING),
        (0.5, 0.9, MIN_BLOCKS, {"guardrail_breached": True}, GUARDRAIL_BREACH),
        (None, None, 0, {"guardrail_breached": True}, GUARDRAIL_BREACH),
    ],
)
def test_comparison_state(low: Any, high: Any, blocks: int, kwargs: dict[str, Any], state: str) -> None:
    assert comparison_state(low, high, blocks, **kwargs) == state


# -- descriptive figures -------------------------------------------------------------------------


def test_max_drawdown_r() -> None:
    assert max_drawdown_r([1.0, -2.0, 1.0, -1.0, 3.0]) == pytest.approx(2.0)  # peak 1, trough -1
    assert max_drawdown_r([-1.0, -0.5]) == pytest.approx(1.5)  # from the start
    assert max_drawdown_r([0.5, 0.5]) == 0.0
    assert max_drawdown_r([]) == 0.0


def test_brier_score() -> None:
    assert brier_score([0.9, 0.2, 0.5], [1, 0, 1]) == pytest.approx((0.01 + 0.04 + 0.25) / 3)
    assert brier_score([], []) is None


def test_average_precision_equals_sklearn() -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(2, 400))
        y = rng.random(n) < rng.uniform(0.05, 0.7)
        y[0] = True
        score = np.round(rng.random(n), int(rng.integers(1, 4)))  # ties
        assert average_precision(y, score) == pytest.approx(average_precision_score(y, score), rel=1e-12, abs=1e-12)
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([1, 1], [0.3, 0.3]) == pytest.approx(1.0)
    assert average_precision([0, 0], [0.3, 0.4]) is None
    assert average_precision([], []) is None


# -- compare -------------------------------------------------------------------------------------


def test_compare_of_nothing_is_json_safe() -> None:
    got = compare([])
    assert strict_json(got) == got
    assert got["n_bars"] == 0 and got["state"] == COLLECTING
    assert got["mean_diff"] is None and got["nw_se"] is None and got["confidence_sequence"]["low"] is None
    assert got["stage1"]["a"] == {"n": 0, "base_rate": None, "brier": None, "pr_auc": None}
    assert got["hit_rates"] == {"both_signalled": 0, "hit_rate_a": None, "hit_rate_b": None}
    assert got["max_drawdown_r"] == {"a": 0.0, "b": 0.0}


def test_compare_of_holds_only_is_json_safe() -> None:
    got = compare([row(i, {}, {}) for i in range(600)])
    assert strict_json(got) == got
    assert got["mean_diff"] == 0.0 and got["nw_se"] == 0.0 and got["fixed_horizon"]["welch_t"] is None
    assert got["confidence_sequence"]["low"] == 0.0 and got["state"] == NO_MEANINGFUL_DIFFERENCE


def test_compare_summary() -> None:
    rng = np.random.default_rng(5)
    signals, results = ["long", "short", "hold"], {"hit": 21.0, "stop": -11.0, "timeout": 2.0}
    rows = []
    for i in range(1200):
        sides = {}
        for v in "ab":
            signal = str(rng.choice(signals))
            result = str(rng.choice(list(results), p=[0.4, 0.4, 0.2] if v == "b" else [0.3, 0.5, 0.2]))
            traded = signal != "hold"
            held = None if rng.random() < 0.1 else bool(rng.random() < 0.4)
            sides[v] = {"signal": signal, "result": result if traded else None,
                        "pips": results[result] if traded else None, "p_reversal": float(rng.random()),
                        "label_held": held}  # fmt: skip
        rows.append(row(i, sides["a"], sides["b"]))
    got = compare(rows)
    assert strict_json(got) == got
    series = paired_rows(rows)
    assert got["n_bars"] == 1200 and got["nw_lag"] == 24 and got["excluded"]["bars"] == 0
    assert got["mean_diff"] == pytest.approx(series.diff.mean())
    assert got["mean_r_b"] - got["mean_r_a"] == pytest.approx(got["mean_diff"])
    assert got["nw_se"] == pytest.approx(newey_west_se(series.diff, 24))
    low, high, blocks = confidence_sequence(series.diff)
    cs = got["confidence_sequence"]
    assert (cs["low"], cs["high"], cs["blocks"], cs["alpha"], cs["block_bars"]) == (low, high, 50, 0.05, 24)
    assert got["state"] == comparison_state(low, high, blocks)
    both = [r for r in rows if r["a"]["signal"] != "hold" and r["b"]["signal"] != "hold"]
    assert got["hit_rates"]["both_signalled"] == len(both)
    assert got["hit_rates"]["hit_rate_b"] == sum(r["b"]["result"] == "hit" for r in both) / len(both)
    for v in "ab":
        labelled = [r[v] for r in rows if r[v]["label_held"] is not None]
        y = [d["label_held"] for d in labelled]
        p = [d["p_reversal"] for d in labelled]
        s1 = got["stage1"][v]
        assert s1["n"] == len(labelled) and s1["base_rate"] == pytest.approx(np.mean(y))
        assert s1["pr_auc"] == pytest.approx(average_precision_score(y, p), rel=1e-12)
        assert s1["brier"] == pytest.approx(np.mean((np.array(p) - np.array(y)) ** 2))
    assert got["max_drawdown_r"]["a"] == pytest.approx(max_drawdown_r(series.r_a))
    fixed = got["fixed_horizon"]
    ref = sps.ttest_ind(series.r_b, series.r_a, equal_var=False)
    assert fixed["welch_t"] == pytest.approx(ref.statistic) and fixed["welch_df"] == pytest.approx(ref.df)
    assert fixed["paired_t"] == pytest.approx(sps.ttest_rel(series.r_b, series.r_a).statistic)
    assert compare(rows, guardrail_breached=True)["state"] == GUARDRAIL_BREACH


def test_serving_import_pulls_no_scipy_statsmodels_or_pandas() -> None:
    code = "import sys, aifx.paired; print(sorted({'scipy', 'statsmodels', 'pandas', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
