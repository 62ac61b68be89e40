"""aifx.anchored: incremental blocks per series, the same interval as aifx.paired, a decision that stands,
JSON round trips, late bars, and the multiplicity rule."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx import anchored, paired

pytestmark = pytest.mark.unit

ATR, PIP = 0.0010, 0.0001  # 1 R = 10 pips
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(i: int, ra: float, rb: float, pair: str = "EURUSD", tf: str = "1h", atr: float = ATR) -> dict[str, Any]:
    """A paired row (EvaluationStore.paired()'s shape) where a earns ra R and b earns rb R (long trades)."""

    def side(r: float) -> dict[str, Any]:
        return {"signal": "long", "result": "timeout", "pips": r * 10.0, "p_reversal": 0.5, "label_held": None}

    return {"bar_id": i, "pair": pair, "timeframe": tf, "bar_time": T0 + timedelta(hours=i), "atr": atr,
            "pip": PIP, "a": side(ra), "b": side(rb)}  # fmt: skip


def rows_of(ra: np.ndarray, rb: np.ndarray, **kw: Any) -> list[dict[str, Any]]:
    return [row(i, float(x), float(y), **kw) for i, (x, y) in enumerate(zip(ra, rb, strict=True))]


def fresh(alpha: float = 0.05, min_effect: float = 0.05) -> anchored.Anchored:
    return anchored.start(T0, alpha, min_effect)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=400),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_fed_in_any_pieces_one_series_gives_paireds_interval(n: int, cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    ra, rb = rng.normal(0, 1, n), rng.normal(0.1, 1, n)
    rows = rows_of(ra, rb)
    state = fresh()
    edges = sorted({0, n, *(min(c, n) for c in cuts)})
    for lo, hi in zip(edges, edges[1:], strict=False):
        state = anchored.advance(state, rows[lo:hi])
    diff = paired.paired_rows(rows).diff
    low, high, blocks = paired.confidence_sequence(diff)
    assert state.blocks == blocks == n // anchored.BLOCK and state.bars == n
    got = anchored.interval(state)
    if blocks < 2:
        assert got == (None, None)
    else:
        assert got[0] == pytest.approx(low, abs=1e-9) and got[1] == pytest.approx(high, abs=1e-9)
    assert (state.series["EURUSD|1h"].n if n else 0) == n % anchored.BLOCK  # the partial block is kept


def test_the_fast_path_equals_the_row_path() -> None:
    rng = np.random.default_rng(3)
    ra, rb = rng.normal(0, 1, 700), rng.normal(0.2, 1, 700)
    by_rows = anchored.advance(anchored.advance(fresh(), rows_of(ra[:300], rb[:300])), rows_of(ra, rb)[300:])
    times = [r["bar_time"].isoformat() for r in rows_of(ra, rb)]
    fast = anchored.advance_series(fresh(), "EURUSD|1h", times[:300], ra[:300], rb[:300])
    fast = anchored.advance_series(fast, "EURUSD|1h", times, ra, rb)  # the first 300 are not new
    assert fast.series == by_rows.series and (fast.blocks, fast.bars) == (by_rows.blocks, by_rows.bars)
    for name in ("s1", "s2", "dd_a", "dd_b", "cum_a", "cum_b"):
        assert getattr(fast, name) == pytest.approx(getattr(by_rows, name))


def test_blocks_are_formed_per_series_in_time_order() -> None:
    rng = np.random.default_rng(5)
    n = 100
    eur = rows_of(rng.normal(0, 1, n), rng.normal(0, 1, n))
    gbp = rows_of(rng.normal(0, 1, n), rng.normal(0, 1, n), pair="GBPUSD", tf="4h")
    mixed = sorted(eur + gbp, key=lambda r: (r["bar_time"], r["pair"]))
    state = anchored.advance(fresh(), mixed)
    assert state.blocks == 2 * (n // anchored.BLOCK)
    means = np.concatenate([paired.block_means(paired.paired_rows(s).diff, anchored.BLOCK) for s in (eur, gbp)])
    assert state.s1 == pytest.approx(means.sum()) and state.s2 == pytest.approx((means**2).sum())
    assert {k: t.n for k, t in state.series.items()} == {"EURUSD|1h": 4, "GBPUSD|4h": 4}


def test_late_and_excluded_bars_are_skipped_and_counted() -> None:
    rows = rows_of(np.zeros(30), np.ones(30))
    state = anchored.advance(fresh(), rows[10:])
    again = anchored.advance(state, rows[:12] + [row(40, 0.0, 1.0, atr=1e-9)])  # 12 late, 1 atr_below_min
    assert again.late == 12 and again.excluded == 1 and again.bars == state.bars == 20
    assert again.series["EURUSD|1h"].last == rows[-1]["bar_time"].isoformat()


def test_the_last_processed_bar_read_again_is_not_late() -> None:
    """The promoter reads each pass from the series' last processed bar on (EvaluationStore.paired(since=...)
    is inclusive): that bar comes back every pass and is neither counted again nor late."""
    rows = rows_of(np.zeros(30), np.ones(30))
    state = anchored.advance(fresh(), rows[:20])
    for _ in range(3):  # passes with nothing new
        state = anchored.advance(state, rows[19:20])
    state = anchored.advance(state, rows[19:])
    assert state.late == 0 and state.bars == 30


def test_a_decision_stands_whatever_comes_later() -> None:
    rng = np.random.default_rng(11)
    n = 24 * 60
    state = anchored.advance(fresh(), rows_of(rng.normal(0, 0.3, n), rng.normal(1.0, 0.3, n)))
    assert state.decision == paired.B_BETTER and state.decided_blocks == paired.MIN_BLOCKS
    worse = [row(n + i, 2.0, -2.0) for i in range(24 * 200)]
    later = anchored.advance(state, worse)
    assert later.decision == paired.B_BETTER and later.decided_blocks == paired.MIN_BLOCKS
    high = anchored.interval(later)[1]
    assert high is not None and high < 0  # the interval moved; the decision did not


def test_an_interval_between_zero_and_the_minimum_effect_is_no_decision_for_b() -> None:
    rng = np.random.default_rng(3)
    n = 24 * 100
    state = anchored.advance(fresh(min_effect=0.5), rows_of(np.zeros(n), rng.normal(0.3, 4.0, n)))
    low, high = anchored.interval(state)
    assert low is not None and high is not None and 0 < low < 0.5 < high
    assert paired.comparison_state(low, high, state.blocks, 0.5) == paired.B_BETTER_BELOW_MIN_EFFECT
    assert state.decision is None
    small = anchored.advance(fresh(min_effect=0.5), rows_of(np.zeros(n), rng.normal(0.02, 0.1, n)))
    assert small.decision == paired.NO_MEANINGFUL_DIFFERENCE


def test_a_worse_challenger_is_a_better() -> None:
    rng = np.random.default_rng(4)
    n = 24 * 60
    state = anchored.advance(fresh(), rows_of(rng.normal(1.0, 0.3, n), rng.normal(0, 0.3, n)))
    assert state.decision == paired.A_BETTER and anchored.summary(state)["decision"] == paired.A_BETTER


def test_the_state_is_plain_json_and_comes_back_equal() -> None:
    rng = np.random.default_rng(8)
    state = anchored.advance(fresh(0.01), rows_of(rng.normal(0, 1, 250), rng.normal(0, 1, 250)))
    text = json.dumps(anchored.to_json(state), allow_nan=False)
    back = anchored.from_json(json.loads(text))
    assert back == state and anchored.summary(back) == anchored.summary(state)
    with pytest.raises(ValueError, match="format"):
        anchored.from_json({**json.loads(text), "format": 99})


def test_drawdowns_follow_the_cumulative_r_of_each_version() -> None:
    ra = np.array([1.0, -2.0, -1.0, 3.0, -4.0])
    state = anchored.advance(fresh(), rows_of(ra[:2], -ra[:2]))
    state = anchored.advance(state, [row(i, float(ra[i]), float(-ra[i])) for i in range(2, 5)])
    assert state.dd_a == pytest.approx(paired.max_drawdown_r(ra)) and state.dd_b == pytest.approx(
        paired.max_drawdown_r(-ra)
    )


def test_start_refuses_a_bad_alpha() -> None:
    with pytest.raises(ValueError):
        anchored.start(T0, 0.0)
    with pytest.raises(ValueError):
        anchored.start(T0, 0.05, -1.0)


# -- multiplicity -----------------------------------------------------------------------------------


def test_spent_shares_add_up_to_one_and_shrink() -> None:
    shares = [anchored.spend_share(j) for j in range(200_000)]
    assert shares[0] == pytest.approx(6 / math.pi**2) and all(a > b for a, b in zip(shares, shares[1:], strict=False))
    assert sum(shares) < 1.0 and sum(shares) > 1.0 - 1e-5
    with pytest.raises(ValueError):
        anchored.spend_share(-1)


@given(k=st.integers(min_value=1, max_value=50), decisions=st.integers(min_value=1, max_value=500))
def test_a_lifes_alpha_over_all_challengers_and_decisions_is_at_most_alpha(k: int, decisions: int) -> None:
    total = sum(anchored.anchor_alpha(0.05, k, j) for _ in range(k) for j in range(decisions))
    assert total <= 0.05 + 1e-12
    assert anchored.split_alpha(0.05, k) * k == pytest.approx(0.05)
    assert anchored.split_alpha(0.05, 0) == 0.05  # no challenger armed yet counts as one


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**16), effect=st.sampled_from([-0.6, 0.0, 0.1, 0.6]))
def test_the_decision_is_the_first_crossing_of_paireds_path(seed: int, effect: float) -> None:
    rng = np.random.default_rng(seed)
    n = 24 * 80
    diff = rng.normal(effect, 2.0, n)
    state = anchored.start(T0, 0.05)
    times = [f"{i:06d}" for i in range(n)]
    for lo in range(0, n, 37):  # passes that cut blocks anywhere
        state = anchored.advance_series(state, "s", times[lo : lo + 37], np.zeros(len(diff[lo : lo + 37])),
                                        diff[lo : lo + 37])  # fmt: skip
    low, high = paired.cs_path(paired.block_means(diff, anchored.BLOCK))
    first = None
    for k in range(1, low.size + 1):
        lo_k, hi_k = (float(low[k - 1]), float(high[k - 1])) if k >= 2 else (None, None)
        verdict = paired.comparison_state(lo_k, hi_k, k)
        if verdict in anchored.DECISIONS:
            first = (verdict, k)
            break
    assert (state.decision, state.decided_blocks) == (first if first else (None, None))


def test_null_series_of_different_spread_fed_pass_by_pass_rarely_decide_for_either() -> None:
    """Three null series (one with 3 x the spread) in one anchor, a pass every 24 bars: false decisions <= alpha."""
    from bench import power

    runs, bars, series = 200, 2400, 3
    rng = np.random.default_rng(2626)
    diffs = []
    for _ in range(series):
        r_a, r_b = power.versions(rng, power.simulate_outcomes(rng, runs, bars), 0.0)
        diffs.append(r_b - r_a)
    diffs[2] = 3.0 * diffs[2]
    times = [f"{i:06d}" for i in range(bars)]
    wrong = 0
    for run in range(runs):
        state = anchored.start(T0, 0.05)
        for lo in range(0, bars, 24):
            for s in range(series):
                d = diffs[s][run, lo : lo + 24]
                state = anchored.advance_series(state, f"s{s}", times[lo : lo + 24], np.zeros(d.size), d)
            if state.decision is not None:
                break
        wrong += state.decision in (paired.B_BETTER, paired.A_BETTER)
    # 0.05 is the guarantee; 200 runs: + 2 Monte Carlo standard errors is about 0.08
    print(f"null series: {wrong} of {runs} runs decided for a or b")
    assert wrong / runs <= 0.08, wrong / runs
