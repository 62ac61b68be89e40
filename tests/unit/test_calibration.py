"""Calibration maps (aifx/calibration.py) and their fitting and measures (training/calibration.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aifx.calibration import IDENTITY_MAP, Calibration
from aifx.versions import ModelFileError

pytestmark = pytest.mark.unit

PLATT = Calibration("platt", a=1.7, b=-0.4)
ISOTONIC = Calibration("isotonic", x=(0.1, 0.4, 0.6, 0.95), y=(0.02, 0.2, 0.2, 0.8))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _random_maps(rng: np.random.Generator, n: int) -> list[Calibration]:
    maps = []
    for _ in range(n):
        maps.append(Calibration("platt", a=float(rng.uniform(0.05, 5)), b=float(rng.normal(0, 3))))
        k = int(rng.integers(2, 30))
        x = np.sort(rng.choice(np.linspace(0, 1, 1001), size=k, replace=False))
        y = np.sort(rng.uniform(0, 1, size=k))
        maps.append(Calibration("isotonic", x=tuple(map(float, x)), y=tuple(map(float, y))))
    return maps


# --- the map ---------------------------------------------------------------------------------------


def test_identity_is_exact_and_does_no_work() -> None:
    p = np.array([0.0, 1e-9, 0.3, 0.5, 1.0])
    assert IDENTITY_MAP(p) is p
    assert IDENTITY_MAP.is_identity and Calibration.from_json({"method": "identity"}) == IDENTITY_MAP


def test_platt_is_the_sigmoid_of_the_scaled_logit() -> None:
    p = np.array([0.01, 0.2, 0.5, 0.8, 0.99])
    assert np.allclose(PLATT(p), _sigmoid(1.7 * _logit(p) - 0.4), rtol=0, atol=1e-12)
    assert np.isfinite(PLATT(np.array([0.0, 1.0]))).all()  # clipped before the logit


def test_isotonic_interpolates_between_knots_and_is_flat_beyond_them() -> None:
    p = np.array([0.0, 0.1, 0.25, 0.5, 0.6, 0.95, 1.0])
    assert np.allclose(ISOTONIC(p), [0.02, 0.02, 0.11, 0.2, 0.2, 0.8, 0.8], rtol=0, atol=1e-12)


def test_outputs_that_are_not_probabilities_stay_visible() -> None:
    bad = np.array([np.nan, -0.1, 1.5, np.inf])
    for c in (PLATT, ISOTONIC):
        assert np.isnan(c(bad)).all(), c.method


def test_random_maps_are_monotone_into_the_unit_interval() -> None:
    rng = np.random.default_rng(7)
    p = np.sort(np.concatenate([rng.uniform(0, 1, 500), [0.0, 1.0]]))
    for c in _random_maps(rng, 50):
        out = c(p)
        assert ((out >= 0) & (out <= 1)).all(), c
        assert (np.diff(out) >= -1e-15).all(), c


def test_json_round_trip_keeps_the_map() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 200)
    for c in (IDENTITY_MAP, PLATT, ISOTONIC, *_random_maps(rng, 5)):
        back = Calibration.from_json(json.loads(json.dumps(c.to_json())))
        assert back == c
        assert np.array_equal(back(p), c(p))


@pytest.mark.parametrize(
    "data,message",
    [
        ([1, 2], "must be a JSON object"),
        ({"method": "beta"}, "unknown method 'beta'"),
        ({}, "unknown method None"),
        ({"method": "platt", "a": 1.0}, "platt maps have the keys"),
        ({"method": "identity", "a": 1.0}, "identity maps have the keys"),
        ({"method": "platt", "a": "1", "b": 0.0}, "a must be a number"),
        ({"method": "platt", "a": True, "b": 0.0}, "a must be a number"),
        ({"method": "platt", "a": float("nan"), "b": 0.0}, "must be finite"),
        ({"method": "platt", "a": 1.0, "b": float("inf")}, "must be finite"),
        ({"method": "platt", "a": -0.5, "b": 0.0}, "slope a must be positive"),
        ({"method": "platt", "a": 0, "b": 0.0}, "slope a must be positive"),
        ({"method": "isotonic", "x": [0.1, 0.5], "y": [0.1]}, "as many y as x"),
        ({"method": "isotonic", "x": [0.5], "y": [0.5]}, "needs 2 to"),
        ({"method": "isotonic", "x": "0.1,0.5", "y": [0.1, 0.2]}, "x must be a list"),
        ({"method": "isotonic", "x": [0.1, None], "y": [0.1, 0.2]}, r"x\[1\] must be a number"),
        ({"method": "isotonic", "x": [0.5, 0.5], "y": [0.1, 0.2]}, "strictly increasing"),
        ({"method": "isotonic", "x": [0.6, 0.5], "y": [0.1, 0.2]}, "strictly increasing"),
        ({"method": "isotonic", "x": [0.1, 0.5], "y": [0.3, 0.2]}, "non-decreasing"),
        ({"method": "isotonic", "x": [0.1, 0.5], "y": [-0.1, 0.2]}, r"lie in \[0, 1\]"),
        ({"method": "isotonic", "x": [0.1, 0.5], "y": [0.1, 1.2]}, r"lie in \[0, 1\]"),
        ({"method": "isotonic", "x": [0.1, float("nan")], "y": [0.1, 0.2]}, "finite"),
    ],
)
def test_malformed_maps_are_refused_with_the_reason(data, message) -> None:
    with pytest.raises(ModelFileError, match=message) as info:
        Calibration.from_json(data)
    assert "calibration.json" in str(info.value)


# --- fitting and measures ----------------------------------------------------------------------------


def _overconfident(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True probabilities, outcomes drawn from them, and raw scores = sigmoid(2 logit(true) + 1)."""
    true = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < true).astype(float)
    return true, y, _sigmoid(2 * _logit(true) + 1)


def test_platt_recovers_a_known_distortion() -> None:
    from training.calibration import brier, fit_platt

    rng = np.random.default_rng(11)
    true, y, raw = _overconfident(rng, 40_000)
    c = fit_platt(raw, y)
    # true = sigmoid((logit(raw) - 1) / 2): a = 0.5, b = -0.5
    assert c.method == "platt" and abs(c.a - 0.5) < 0.03 and abs(c.b + 0.5) < 0.05, c
    _, y2, raw2 = _overconfident(rng, 20_000)
    assert brier(y2, c(raw2)) < brier(y2, raw2)


def test_isotonic_fit_is_a_valid_monotone_map_that_helps_out_of_sample() -> None:
    from training.calibration import brier, fit_isotonic

    rng = np.random.default_rng(12)
    _, y, raw = _overconfident(rng, 5_000)
    c = fit_isotonic(raw, y)
    assert c.method == "isotonic"
    Calibration.from_json(c.to_json())  # valid as stored
    _, y2, raw2 = _overconfident(rng, 5_000)
    assert brier(y2, c(raw2)) < brier(y2, raw2)
    assert (np.diff(c(np.linspace(0, 1, 1001))) >= 0).all()


def test_fits_fall_back_to_identity_without_two_classes_or_rows() -> None:
    from training.calibration import MIN_ROWS, fit_isotonic, fit_platt

    p = np.linspace(0.1, 0.9, 100)
    for fit in (fit_platt, fit_isotonic):
        assert fit(p, np.zeros(100)).is_identity
        assert fit(p[: MIN_ROWS - 1], (p[: MIN_ROWS - 1] > 0.2).astype(float)).is_identity


def test_platt_refuses_a_falling_map() -> None:
    from training.calibration import fit_platt

    rng = np.random.default_rng(5)
    p = rng.uniform(0.05, 0.95, 2_000)
    y = (rng.random(2_000) < 1 - p).astype(float)  # the network ranks backwards
    assert fit_platt(p, y).is_identity


def test_choose_takes_the_lowest_cross_fitted_brier_or_identity() -> None:
    from training.calibration import brier, choose, crossfit

    rng = np.random.default_rng(13)
    _, y, raw = _overconfident(rng, 3_000)
    choice = choose(raw, y)
    assert choice.method in ("platt", "isotonic")
    assert choice.brier["identity"] == pytest.approx(brier(y, raw))
    assert choice.brier[choice.method] == min(choice.brier.values()) < choice.brier["identity"]
    assert np.array_equal(choice.crossfit[choice.method], crossfit(choice.method, raw, y))
    assert choice.calibration.method == choice.method
    # calibrated scores: no map wins on held-out halves often enough to be chosen; when one is, it had to win
    true = rng.uniform(0.05, 0.95, 400)
    calibrated = choose(true, (rng.random(400) < true).astype(float))
    best_fitted = min(calibrated.brier["platt"], calibrated.brier["isotonic"])
    assert (calibrated.method == "identity") == (best_fitted >= calibrated.brier["identity"])


def test_crossfit_maps_each_half_by_the_other() -> None:
    from training.calibration import crossfit, fit_platt

    rng = np.random.default_rng(14)
    _, y, raw = _overconfident(rng, 1_001)
    half = 500
    out = crossfit("platt", raw, y)
    assert np.allclose(out[:half], fit_platt(raw[half:], y[half:])(raw[:half]))
    assert np.allclose(out[half:], fit_platt(raw[:half], y[:half])(raw[half:]))


def test_brier_ece_and_reliability_by_hand() -> None:
    from training.calibration import brier, ece, reliability

    y = np.array([0, 1, 1, 0], dtype=float)
    assert brier(y, np.array([0.1, 0.9, 0.8, 0.3])) == pytest.approx((0.01 + 0.01 + 0.04 + 0.09) / 4)
    quarter = np.full(4, 0.25)
    assert ece(np.array([1, 0, 0, 0], dtype=float), quarter) == pytest.approx(0.0)  # calibrated
    assert ece(np.zeros(4), np.full(4, 0.9)) == pytest.approx(0.9)
    # two bins: [0.1, 0.1] with outcomes (0, 1) -> |0.5 - 0.1|, [0.95, 1.0] with (1, 1) -> |1 - 0.975|
    p = np.array([0.1, 0.1, 0.95, 1.0])
    assert ece(np.array([0, 1, 1, 1], dtype=float), p) == pytest.approx(0.5 * 0.4 + 0.5 * 0.025)
    r = reliability(np.array([0, 1, 1, 1], dtype=float), p)
    assert r["count"] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 falls in the last bin
    assert r["mean_prob"][1] == pytest.approx(0.1) and r["outcome_rate"][1] == pytest.approx(0.5)
    assert r["mean_prob"][0] is None and r["outcome_rate"][9] == pytest.approx(1.0)


def test_mcc_threshold_separates_and_never_buys_its_score_by_always_firing() -> None:
    from training.calibration import mcc_threshold

    y = np.array([0, 0, 0, 0, 1, 1], dtype=float)
    p = np.array([0.05, 0.1, 0.2, 0.31, 0.4, 0.7])
    t, mcc = mcc_threshold(y, p)
    assert 0.31 < t <= 0.4 and mcc == pytest.approx(1.0)
    # the best of ties is the highest threshold: every t in (0.31, 0.4] separates
    assert t == 0.4
    # scores that say nothing: firing on everything would score F1 0.65 at base rate 0.48, MCC 0
    rng = np.random.default_rng(2)
    y = (rng.random(2_000) < 0.48).astype(float)
    t, mcc = mcc_threshold(y, np.full(2_000, 0.5))
    assert mcc == 0.0


def test_mcc_threshold_follows_a_low_base_rate() -> None:
    from training.calibration import mcc_threshold

    rng = np.random.default_rng(4)
    true = rng.beta(1, 7, 20_000)  # calibrated probabilities around a base rate of 0.125
    y = (rng.random(20_000) < true).astype(float)
    t, _ = mcc_threshold(y, true)
    fires = (true >= t).mean()
    assert t < 0.5 and 0 < fires < 0.5, (t, fires)  # a fixed 0.5 would fire on ~1 % of bars


def test_calibration_split_is_the_purged_time_tail() -> None:
    from training.evaluate import calibration_split

    bars = np.arange(100, 300)
    idx = np.arange(0, 200)
    fit, calib = calibration_split(bars, idx, horizon=5, share=0.25)
    assert np.array_equal(calib, idx[-50:])
    assert (bars[fit] + 5 < bars[calib[0]]).all() and len(fit) == 150 - 5
    fit, calib = calibration_split(bars, idx[:1], horizon=5, share=0.25)
    assert len(calib) == 0 and np.array_equal(fit, idx[:1])
