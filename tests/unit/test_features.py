"""The feature module is causal and the serving window equals the training sample."""

from pathlib import Path

import numpy as np
import pytest

from aifx.features import (
    FEATURE_SETS,
    compute_features,
    min_candles,
    sample_windows,
    window_features,
    windows_features,
)
from training.candles_csv import load_candles_csv

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data" / "FOREX_EURUSD_1H_ASK.csv"


@pytest.fixture(scope="module")
def candles():
    return load_candles_csv(DATA)


@pytest.mark.parametrize("version", sorted(FEATURE_SETS))
def test_appending_future_bars_never_changes_earlier_rows(candles, version):
    names = FEATURE_SETS[version]
    full = compute_features(candles, names)
    cuts = np.unique(np.linspace(2, len(candles) - 1, 60).astype(int))
    assert len(cuts) >= 50
    for k in cuts:
        prefix = compute_features(candles.slice(0, int(k)), names)
        assert np.array_equal(prefix, full[:k], equal_nan=True), f"{version}: row differs at cut {k}"


@pytest.mark.parametrize("version", sorted(FEATURE_SETS))
def test_features_are_finite_after_warm_up(candles, version):
    names = FEATURE_SETS[version]
    full = compute_features(candles, names)
    warm = min_candles(names, 1) - 1
    assert np.isfinite(full[warm:]).all()
    assert np.isnan(full[warm - 1]).any()


def test_serving_window_equals_training_sample(candles):
    names = FEATURE_SETS["v3.1"]
    x, bars = sample_windows(candles.slice(0, 400), names, 20)
    for i in (0, 57, len(bars) - 1):
        t = int(bars[i])
        extra_history = candles.slice(0, t + 1)  # the server gets more candles than it needs
        assert np.array_equal(window_features(extra_history, names, 20), x[i])


def test_too_few_candles_says_how_many_are_needed(candles):
    names = FEATURE_SETS["v3.0"]
    need = min_candles(names, 20)
    with pytest.raises(ValueError, match=f"need at least {need} candles, got {need - 1}"):
        window_features(candles.slice(0, need - 1), names, 20)


def test_unknown_feature_is_rejected(candles):
    with pytest.raises(KeyError, match="unknown feature"):
        compute_features(candles, ["ret_1", "moon_phase"])


@pytest.mark.parametrize("version", sorted(FEATURE_SETS))
def test_stacked_windows_equal_one_window_at_a_time(candles, version):
    """The batch route computes many windows in one pass: bit for bit what each alone gives."""
    names = FEATURE_SETS[version]
    need = min_candles(names, 20)
    ends = np.random.default_rng(7).integers(need, len(candles), 120)
    tails = [candles.slice(int(e) - need, int(e)) for e in ends]
    stacked = windows_features(tails, names, 20)
    assert stacked.shape == (len(tails), 20, len(names))
    assert np.array_equal(stacked, np.stack([window_features(t, names, 20) for t in tails]))


def test_stacked_windows_need_exactly_min_candles(candles):
    names = FEATURE_SETS["v3.1"]
    with pytest.raises(ValueError, match=f"exactly {min_candles(names, 20)} candles"):
        windows_features([candles.slice(0, 80)], names, 20)
