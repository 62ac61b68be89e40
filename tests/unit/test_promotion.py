"""The promotion policy's rules (aifx/promotion.py) with plain asserts."""

from __future__ import annotations

import pytest

from aifx import promotion
from aifx.paired import STATES

pytestmark = pytest.mark.unit

LIMITS = promotion.Limits(min_effect=0.05, max_drawdown_r=5.0, max_error_rate=0.05, max_psi=0.25)


def test_no_guardrail_breaks_inside_the_limits_or_without_figures():
    assert promotion.breaches(promotion.Watch(5.0, 0.05, 0.25), LIMITS) == []
    assert promotion.breaches(promotion.Watch(), LIMITS) == []


def test_each_guardrail_names_itself():
    broken = promotion.breaches(promotion.Watch(5.5, 0.2, 0.4), LIMITS)
    assert len(broken) == 3
    assert "drawdown 5.500 R" in broken[0] and "error rate 0.200" in broken[1] and "PSI 0.400" in broken[2]


def test_a_breach_overrides_the_state():
    assert promotion.with_guardrails("b_better", ["drawdown"]) == "guardrail_breach"
    assert promotion.with_guardrails("b_better", []) == "b_better"


@pytest.mark.parametrize("state", [s for s in STATES if s != "b_better"])
def test_nothing_happens_unless_the_challenger_is_better(state):
    assert promotion.decide("auto", state, "v3.1", "v3.2", [], None).action is None


def test_auto_switches_and_recommend_recommends_once():
    assert promotion.decide("auto", "b_better", "v3.1", "v3.2", [], None).action == "switch"
    assert promotion.decide("recommend", "b_better", "v3.1", "v3.2", [], None).action == "recommend"
    again = promotion.decide("recommend", "b_better", "v3.1", "v3.2", [], "recommend")
    assert again.action is None and "already" in again.reason


def test_off_a_breach_or_an_active_challenger_do_nothing():
    assert promotion.decide("off", "b_better", "v3.1", "v3.2", [], None).action is None
    blocked = promotion.decide("auto", "b_better", "v3.1", "v3.2", ["drawdown 9 R"], None)
    assert blocked.action is None and "drawdown 9 R" in blocked.reason
    assert promotion.decide("auto", "b_better", "v3.2", "v3.2", [], None).action is None


def test_probation_rolls_back_on_a_breach_and_confirms_after_its_bars():
    assert promotion.decide_probation(["drawdown"], 10, 500).action == "rollback"
    assert promotion.decide_probation([], 499, 500).action is None
    assert promotion.decide_probation([], 500, 500).action == "confirm"
    assert promotion.decide_probation(["drawdown"], 900, 500).action == "rollback"  # a breach wins


def test_state_gauge_is_one_for_the_current_state_only():
    values = promotion.state_gauge({("v3.1", "v3.0"): "a_better"})
    assert len(values) == len(STATES)
    assert values[("v3.1", "v3.0", "a_better")] == 1.0 and sum(values.values()) == 1.0


def test_tally_gives_error_rates_since_the_last_take():
    t = promotion.Tally()
    for ok in (True, True, True, False):
        t.record("v3.1", ok)
    t.record("v3.0", True)
    assert t.take() == {"v3.1": 0.25, "v3.0": 0.0}
    assert t.take() == {}


def test_figures_keep_only_the_named_numbers():
    assert promotion.figures({"n_bars": 3, "state": "x", "other": 1}, ("n_bars", "missing")) == {
        "n_bars": 3,
        "missing": None,
    }
