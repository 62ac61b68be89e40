"""The promotion policy's rules (aifx/promotion.py) with plain asserts, and a policy's defaults from the settings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from aifx import paired, promotion
from aifx.http import evaluation_routes
from aifx.paired import STATES
from aifx.serving.promoter import Promoter
from aifx.settings import Settings
from experiments import ExperimentStore, PromotionStore

pytestmark = pytest.mark.unit

LIMITS = promotion.Limits(min_effect=0.05, max_drawdown_r=5.0, max_error_rate=0.05)


def test_no_guardrail_breaks_inside_the_limits_or_without_figures():
    assert promotion.breaches(promotion.Watch(1.0, 6.0, 240, 10, 200), LIMITS) == []  # b 5 R beyond a: not more
    assert promotion.breaches(promotion.Watch(), LIMITS) == []


def test_each_guardrail_names_itself():
    broken = promotion.breaches(promotion.Watch(1.0, 6.5, 240, 40, 200), LIMITS)
    assert len(broken) == 2
    assert "drawdown 6.500 R exceeds the incumbent's 1.000 R" in broken[0] and "error rate 40/200" in broken[1]


def test_guardrails_need_their_minimum_counts():
    assert promotion.breaches(promotion.Watch(0.0, 500.0, promotion.MIN_DRAWDOWN_BARS - 1), LIMITS) == []
    assert promotion.breaches(promotion.Watch(errors=199, calls=promotion.MIN_CALLS - 1), LIMITS) == []
    assert len(promotion.breaches(promotion.Watch(0.0, 500.0, promotion.MIN_DRAWDOWN_BARS), LIMITS)) == 1


def test_the_error_guardrail_needs_the_wilson_bound_above_the_limit():
    assert promotion.wilson_lower(0, 0) == 0.0 and promotion.wilson_lower(0, 1000) == 0.0
    assert promotion.wilson_lower(500, 1000) == pytest.approx(0.4528, abs=1e-4)  # z = 3
    assert promotion.wilson_lower(15, 200) < 0.05  # a 7.5 % rate over 200 calls is not shown to exceed 5 %
    assert promotion.breaches(promotion.Watch(errors=15, calls=200), LIMITS) == []
    assert promotion.breaches(promotion.Watch(errors=60, calls=400), LIMITS) != []  # 15 % over 400: it is


@given(errors=st.integers(min_value=0, max_value=5000), extra=st.integers(min_value=0, max_value=5000))
def test_the_wilson_bound_lies_below_the_rate(errors: int, extra: int) -> None:
    calls = errors + extra
    low = promotion.wilson_lower(errors, calls)
    assert 0.0 <= low <= (errors / calls if calls else 0.0) + 1e-12


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


def promotes(low: float, high: float, min_effect: float = 0.05) -> tuple[str, str | None]:
    """The state of an always-valid interval and what an `auto` policy does about it."""
    state = paired.comparison_state(low, high, paired.MIN_BLOCKS, min_effect)
    return state, promotion.decide("auto", state, "v3.1", "v3.2", [], None).action


def test_auto_promotes_only_when_the_interval_rules_out_effects_below_the_minimum():
    assert promotes(0.06, 0.4) == ("b_better", "switch")
    assert promotes(0.11, 0.4, min_effect=0.1) == ("b_better", "switch")
    assert promotes(0.06, 0.4, min_effect=0.1) == ("b_better_below_min_effect", None)
    assert promotes(0.01, 0.4) == ("b_better_below_min_effect", None)  # better, not shown to be by 0.05
    assert promotes(0.05, 0.4) == ("b_better_below_min_effect", None)  # a bound at the minimum is not above it
    assert promotes(0.01, 0.04) == ("no_meaningful_difference", None)  # inside the band: equivalent
    assert promotes(-0.04, 0.04) == ("no_meaningful_difference", None)
    assert promotes(-0.04, -0.01) == ("no_meaningful_difference", None)
    assert promotes(-0.4, -0.01) == ("a_better", None)
    assert promotes(-0.01, 0.4) == ("collecting", None)
    recommend = promotion.decide("recommend", "b_better_below_min_effect", "v3.1", "v3.2", [], None)
    assert recommend.action is None and "b_better_below_min_effect" in recommend.reason


def test_off_a_breach_or_an_active_challenger_do_nothing():
    assert promotion.decide("off", "b_better", "v3.1", "v3.2", [], None).action is None
    blocked = promotion.decide("auto", "b_better", "v3.1", "v3.2", ["drawdown 9 R"], None)
    assert blocked.action is None and "drawdown 9 R" in blocked.reason
    assert promotion.decide("auto", "b_better", "v3.2", "v3.2", [], None).action is None


def test_probation_rolls_back_on_a_breach_or_a_better_and_confirms_after_its_bars():
    assert promotion.decide_probation(["drawdown"], 10, 500).action == "rollback"
    assert promotion.decide_probation([], 499, 500).action is None
    assert promotion.decide_probation([], 500, 500).action == "confirm"
    assert promotion.decide_probation(["drawdown"], 900, 500).action == "rollback"  # a breach wins
    worse = promotion.decide_probation([], 30, 500, paired.A_BETTER)
    assert worse.action == "rollback" and "better" in worse.reason
    for verdict in (None, paired.B_BETTER, paired.NO_MEANINGFUL_DIFFERENCE):
        assert promotion.decide_probation([], 499, 500, verdict).action is None  # probation runs its bars


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
    t.record("v3.1", False)
    assert t.take_counts() == {"v3.1": (1, 1)} and t.take_counts() == {}


def test_figures_keep_only_the_named_numbers():
    assert promotion.figures({"n_bars": 3, "state": "x", "other": 1}, ("n_bars", "missing")) == {
        "n_bars": 3,
        "missing": None,
    }


def test_a_policy_set_without_limits_takes_the_current_settings(tmp_path: Path):
    store = ExperimentStore(f"sqlite:///{tmp_path / 'aifx.db'}")
    pro = Promoter(Settings(comparison_min_effect_r=0.2, guardrail_max_drawdown_r=7.5), None, PromotionStore(store),
                   None, promotion.Tally())  # type: ignore[arg-type]  # fmt: skip
    parts = SimpleNamespace(promoter=pro, registry=SimpleNamespace(check_known=lambda *_: None))
    app = FastAPI()
    app.state.parts, app.state.settings = parts, Settings()  # what the routes read through aifx/http/deps.py
    app.router.routes.extend(evaluation_routes.router.routes)

    def put(body: dict) -> dict:
        r = client.put("/reversal/promotion/v3.2", json=body)
        assert r.status_code == 200, r.text
        return r.json()["data"]

    try:
        with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 50000)) as client:
            got = put({"mode": "recommend"})
            assert (got["min_effect_r"], got["max_drawdown_r"], got["probation_bars"]) == (0.2, 7.5, 500)
            got = put({"mode": "auto", "min_effect_r": 0.1, "max_drawdown_r": 3})
            assert (got["min_effect_r"], got["max_drawdown_r"]) == (0.1, 3.0)  # given values win
            pro.settings = Settings(comparison_min_effect_r=0.3, guardrail_max_drawdown_r=40.0)
            got = put({"mode": "auto", "min_effect_r": None})
            assert (got["min_effect_r"], got["max_drawdown_r"]) == (0.3, 40.0)  # read when the policy is set
            assert client.put("/reversal/promotion/v3.2", json={"mode": "auto", "min_effect_r": 0}).status_code == 422
    finally:
        store.close()
