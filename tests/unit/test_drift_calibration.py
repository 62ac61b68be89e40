"""Cross-fitted drift thresholds (aifx/drift_calibration.py): windows scored against bins built without their fold."""

from __future__ import annotations

import numpy as np
import pytest

from aifx.drift import CALIBRATION_SIZES, build_reference, quantile_bins
from aifx.drift_calibration import FOLDS, calibrate, fold_spans, out_of_fold_psi, window_psi

pytestmark = pytest.mark.unit


def _regime_ar1(rng: np.random.Generator, n: int, phi: float = 0.9, regime: int = 1500) -> np.ndarray:
    """An AR(1) column whose volatility is a new log-normal level every `regime` rows (regimes longer than a
    window: a training year holds a few of them, and a served window may fall in one it has not seen)."""
    noise = rng.normal(size=n) * np.sqrt(1 - phi**2)
    out = np.empty(n)
    out[0] = noise[0]
    for t in range(1, n):
        out[t] = phi * out[t - 1] + noise[t]
    return out * np.repeat(np.exp(rng.normal(0, 0.4, n // regime + 1)), regime)[:n]


def test_fold_spans_cut_the_finite_values_into_contiguous_even_folds() -> None:
    values = np.concatenate([np.full(100, np.nan), np.arange(1000.0)])
    values[[400, 650]] = np.nan  # a NaN row counts for no fold
    spans = fold_spans(values, 4)
    assert spans[0][0] == 100 and spans[-1][1] == len(values)
    assert all(b <= c for (_, b), (c, _) in zip(spans[:-1], spans[1:], strict=True))  # in time order, disjoint
    counts = [int(np.isfinite(values[a:b]).sum()) for a, b in spans]
    assert sum(counts) == 998 and max(counts) - min(counts) <= 1
    assert fold_spans(values, 1) == [(100, len(values))]


def test_out_of_fold_windows_are_scored_against_bins_built_without_their_fold() -> None:
    rng = np.random.default_rng(21)
    values = rng.normal(size=2000)
    values[:500] += 3.0  # the first fold is a regime of its own
    seen, m = out_of_fold_psi(values, 200, 4)
    want = []
    for a, b in fold_spans(values, 4):
        outside = quantile_bins(np.delete(values, np.arange(a, b)))
        want += [outside.psi(values[s : s + 200]) for s in range(a, b - 200 + 1)]
    assert m == 10.0 and seen == pytest.approx(want, rel=1e-12, abs=1e-12)
    # Against bins of every row (its own included) the regime's windows read far less than out of fold.
    in_sample = window_psi(quantile_bins(values), values[:500], 200)
    assert seen[:301].min() > 1.3 * in_sample.max()
    same, m1 = out_of_fold_psi(values, 200, 1)  # one fold: the in-sample rule
    assert m1 == m and same == pytest.approx(window_psi(quantile_bins(values), values, 200), rel=1e-12, abs=1e-12)


def test_a_regime_gets_a_higher_threshold_out_of_fold() -> None:
    """An AR(1) column whose first fifth is twice as volatile as the rest (as January-February 2017 on ret_3):
    in-sample bins hold the regime, so its windows read less against them; out of fold they read more."""
    rng = np.random.default_rng(21)
    x = _regime_ar1(rng, 6000, regime=6000) * np.where(np.arange(6000) < 1200, 2.0, 1.0)
    train = np.column_stack([x, rng.uniform(size=6000)])
    plain = build_reference(("x",), train[:, :1], train[:, 1])
    crossed, in_sample = calibrate(plain, train), calibrate(plain, train, folds=1)
    assert crossed.thresholds is not None and in_sample.thresholds is not None
    assert crossed.thresholds.sizes == in_sample.thresholds.sizes == CALIBRATION_SIZES
    pairs = zip(crossed.thresholds.values["x"], in_sample.thresholds.values["x"], strict=True)
    assert all(a > 1.2 * b for a, b in pairs)
    assert f"{FOLDS} contiguous folds" in crossed.thresholds.method and "1 contiguous" in in_sample.thresholds.method


def test_fresh_series_with_unseen_regimes_breach_less_out_of_fold() -> None:
    """AR(1) columns with volatility regimes longer than a window (4 in 6,000 training rows): fresh series of the
    same process bring regimes the training rows never held; over 8 training draws their 300-row windows breach
    out-of-fold thresholds in at most 1 % of reads, and in-sample ones more often."""
    rng = np.random.default_rng(22)
    breaches = {"crossed": 0, "in_sample": 0}
    reads = 0
    for _ in range(8):
        train = np.column_stack([_regime_ar1(rng, 6000), rng.uniform(size=6000)])
        plain = build_reference(("x",), train[:, :1], train[:, 1])
        crossed, in_sample = calibrate(plain, train), calibrate(plain, train, folds=1)
        psi = window_psi(plain.bins["x"], _regime_ar1(rng, 6000), 300, stride=20)
        reads += len(psi)
        breaches["crossed"] += int((psi > crossed.limits(300)[0]).sum())
        breaches["in_sample"] += int((psi > in_sample.limits(300)[0]).sum())
    assert breaches["crossed"] / reads <= 0.01 < breaches["in_sample"] / reads, (breaches, reads)


def test_calibrate_refuses_no_folds() -> None:
    rng = np.random.default_rng(23)
    train = np.column_stack([rng.normal(size=3000), rng.uniform(size=3000)])
    with pytest.raises(ValueError, match="folds"):
        calibrate(build_reference(("a",), train[:, :1], train[:, 1]), train, folds=0)
