"""Prediction semantics (SPEC 5) with the seed's examples."""

import math

import numpy as np
import pytest

from aifx import signal as sig

pytestmark = pytest.mark.unit


def test_seed_long_example():
    d = sig.decide(0.82, 0.5, 0.68)
    assert d.signal == "long"
    assert math.isclose(d.confidence, 0.75)
    assert d.stage2_prob == 0.68


def test_seed_hold_example():
    d = sig.decide(0.4523, 0.5)
    assert d.signal == "hold"
    assert round(d.confidence, 2) == 0.55
    assert math.isclose(d.confidence, 1 - 0.4523)
    assert d.stage2_prob is None


def test_short_uses_the_larger_side():
    d = sig.decide(0.9, 0.5, 0.2)
    assert d.signal == "short"
    assert math.isclose(d.confidence, (0.9 + 0.8) / 2)


def test_threshold_is_inclusive_and_half_is_long():
    assert sig.decide(0.5, 0.5, 0.5).signal == "long"
    assert sig.decide(0.4999, 0.5).signal == "hold"
    assert sig.decide(0.7, 0.8).signal == "hold"


def test_fired_without_stage2_needs_the_rule():
    with pytest.raises(ValueError):
        sig.decide(0.9, 0.5)


def test_rule_reversal_after_decline_is_long():
    assert sig.by_rule(0.7, -0.01).signal == "long"
    assert sig.by_rule(0.7, 0.01).signal == "short"
    d = sig.by_rule(0.7, -0.01)
    assert d.confidence == 0.7 and d.stage2_prob is None
    assert sig.factors(d)["direction_source"] == sig.NO_STAGE2_RULE


def test_window_ret_1_sum():
    rows = np.array([[0.01, 5.0], [-0.03, 6.0]])
    assert math.isclose(sig.window_ret_1_sum(rows, ("ret_1", "x")), -0.02)


def test_factors_and_consensus():
    assert sig.factors(sig.hold(0.2)) == {"reversal_detected": False, "direction": None}
    assert sig.factors(sig.with_stage2(0.8, 0.3))["direction"] == "short"
    assert sig.consensus(["long", "long"]) == ("long", False)
    assert sig.consensus(["long", "hold"]) == (None, True)
    assert sig.consensus([]) == (None, False)
