"""Input drift (aifx/drift.py): quantile bins, PSI, references, rolling windows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aifx.drift import (
    CALIBRATION_SIZES,
    EPSILON,
    FALLBACK_PSI,
    MIN_ROWS,
    STAGE1,
    WINDOW_ROWS,
    AlertThresholds,
    Bins,
    DriftReferenceError,
    DriftWindows,
    Reference,
    Window,
    build_reference,
    psi,
    quantile_bins,
)
from aifx.drift_calibration import calibrate, window_psi

pytestmark = pytest.mark.unit


def test_psi_known_values() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    # An empty bin is floored at EPSILON: finite, and large.
    expected = 0.5 * math.log(2) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected)
    assert math.isfinite(psi([0.0, 1.0], [1.0, 0.0]))
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(psi([0.25, 0.75], [0.5, 0.5]))  # symmetric


def test_quantile_bins_equal_frequency() -> None:
    values = np.arange(1000, dtype=np.float64)
    bins = quantile_bins(values)
    assert len(bins.edges) == 9 and (np.diff(bins.edges) > 0).all()
    assert np.allclose(bins.expected, 0.1)
    assert bins.psi(values) == pytest.approx(0.0, abs=1e-12)
    # Values on an edge go to the lower bin; beyond the training range to the outer bins.
    assert bins.index(np.array([bins.edges[0], -1e9, 1e9])).tolist() == [0, 0, 9]


def test_quantile_bins_with_ties_and_nan() -> None:
    values = np.concatenate([np.zeros(600), np.linspace(0.01, 1.0, 400), [np.nan]])
    bins = quantile_bins(values)
    assert (np.diff(bins.edges) > 0).all() and bins.edges[0] == 0.0  # the ties make one bin
    assert bins.expected[0] == pytest.approx(0.6)
    assert bins.expected.sum() == pytest.approx(1.0)
    constant = quantile_bins(np.full(50, 3.0))  # a constant column: one bin, PSI 0 for the same constant
    assert len(constant.edges) == 0 and constant.expected.tolist() == [1.0]
    assert constant.psi(np.full(10, 3.0)) == 0.0
    with pytest.raises(ValueError):
        quantile_bins(np.array([np.nan]))


def test_same_distribution_low_and_scaled_returns_high() -> None:
    rng = np.random.default_rng(7)
    bins = quantile_bins(rng.normal(0, 1e-3, 5000))
    assert bins.psi(rng.normal(0, 1e-3, 500)) < 0.1
    assert bins.psi(3 * rng.normal(0, 1e-3, 500)) > 0.25
    assert bins.psi(rng.normal(0, 1e-3, 500) + 2e-3) > 0.25  # a shift, too


def test_reference_round_trip_and_names() -> None:
    rng = np.random.default_rng(1)
    ref = build_reference(("a", "b"), rng.normal(size=(300, 2)), rng.uniform(size=300))
    assert ref.names == ("a", "b", STAGE1) and ref.rows == 300
    again = Reference.from_json(json.loads(json.dumps(ref.to_json())))
    assert again.features == ("a", "b") and again.rows == 300
    for name in ref.names:
        assert np.array_equal(again.bins[name].edges, ref.bins[name].edges)
        assert np.allclose(again.bins[name].expected, ref.bins[name].expected)
    with pytest.raises(ValueError):
        build_reference(("a",), rng.normal(size=(10, 2)), rng.uniform(size=10))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=99),
        lambda d: d.update(features="a"),
        lambda d: d["bins"].pop(STAGE1),
        lambda d: d["bins"]["a"].update(edges=[2.0, 1.0]),
        lambda d: d["bins"]["a"].update(expected=[1.0]),
        lambda d: d["bins"]["a"].update(expected=[0.5] * (len(d["bins"]["a"]["edges"]) + 1)),
        lambda d: d["bins"].update(a=[1, 2]),
    ],
)
def test_reference_from_json_refuses_malformed(mutate) -> None:
    rng = np.random.default_rng(2)
    data = build_reference(("a",), rng.normal(size=(100, 1)), rng.uniform(size=100)).to_json()
    mutate(data)
    with pytest.raises(DriftReferenceError):
        Reference.from_json(data)


def test_bins_from_json_checks_shape() -> None:
    assert Bins.from_json({"edges": [0.0], "expected": [0.4, 0.6]}).expected.tolist() == [0.4, 0.6]
    with pytest.raises(DriftReferenceError):
        Bins.from_json({"edges": [0.0, float("nan")], "expected": [0.4, 0.3, 0.3]})


def test_window_is_a_ring_buffer_that_skips_repeats() -> None:
    w = Window("v", 3, capacity=5)
    for i in range(7):
        assert w.append(np.array([i, -i], dtype=float), i / 10)
    assert len(w) == 5
    assert sorted(w.values()[:, 0].tolist()) == [2, 3, 4, 5, 6]
    assert not w.append(np.array([6.0, -6.0]), 0.6)  # the same bar again (after the wrap too)
    assert len(w) == 5 and sorted(w.values()[:, 0].tolist()) == [2, 3, 4, 5, 6]
    assert w.append(np.array([2.0, -2.0]), 0.2)  # an earlier value again is a new row
    assert sorted(w.values()[:, 0].tolist()) == [2, 3, 4, 5, 6]  # 2 dropped as the oldest, 2 appended again
    assert w.values()[:, 2].tolist().count(0.2) == 1 and 0.6 in w.values()[:, 2].tolist()


def _reference(n: int = 2000) -> Reference:
    rng = np.random.default_rng(3)
    return build_reference(("ret_1", "rsi14"), rng.normal(0, 1e-3, (n, 2)) + [0, 0.5], rng.uniform(0, 1, n))


def test_drift_windows_max_over_windows_with_enough_rows() -> None:
    ref = _reference()
    drift = DriftWindows({"v1": ref, "v2": ref}, capacity=300, min_rows=100)
    rng = np.random.default_rng(4)
    assert drift.psi() == {"v1": {}, "v2": {}}
    for _ in range(300):
        drift.add("EUR/USD", "1h", "v1", rng.normal(0, 1e-3, 2) + [0, 0.5], float(rng.uniform()))
    calm = drift.psi()
    assert set(calm["v1"]) == {"ret_1", "rsi14", STAGE1} and max(calm["v1"].values()) < 0.1
    assert calm["v2"] == {}
    for _ in range(99):  # a drifting pair with too few rows does not count yet
        drift.add("GBP/USD", "1h", "v1", 3 * rng.normal(0, 1e-3, 2) + [0, 0.5], float(rng.uniform()))
    assert drift.psi()["v1"] == calm["v1"]
    drift.add("GBP/USD", "1h", "v1", 3 * rng.normal(0, 1e-3, 2) + [0, 0.5], float(rng.uniform()))
    worst = drift.psi()["v1"]
    assert worst["ret_1"] > 0.25 and worst["ret_1"] > calm["v1"]["ret_1"]
    assert worst[STAGE1] < 0.25  # the Stage 1 column did not move


def test_drift_windows_ignore_unknown_versions_and_bad_rows_and_stay_bounded() -> None:
    ref = _reference()
    drift = DriftWindows({"v1": ref}, capacity=10, min_rows=1, max_windows=2)
    drift.add("EUR/USD", "1h", "nope", np.zeros(2), 0.5)  # no reference
    drift.add("EUR/USD", "1h", "v1", np.zeros(3), 0.5)  # not the version's feature count
    assert len(drift) == 0
    drift.add("A", "1h", "v1", np.zeros(2), 0.5)
    drift.add("B", "1h", "v1", np.zeros(2), 0.5)
    drift.add("A", "1h", "v1", np.ones(2), 0.5)  # A used last: B is the least recently used
    drift.add("C", "1h", "v1", np.zeros(2), 0.5)
    assert len(drift) == 2 and set(drift._windows) == {("A", "1h", "v1"), ("C", "1h", "v1")}
    drift.clear()
    assert len(drift) == 0 and drift.psi() == {"v1": {}}


def test_psi_recomputes_only_changed_windows() -> None:
    drift = DriftWindows({"v1": _reference()}, capacity=50, min_rows=5)
    for i in range(10):
        drift.add("A", "1h", "v1", np.array([i * 1e-4, 0.5]), 0.5)
        drift.add("B", "1h", "v1", np.array([i * 1e-4, 0.5]), 0.5)
    drift.psi()
    a, b = drift._windows[("A", "1h", "v1")], drift._windows[("B", "1h", "v1")]
    cached_a, cached_b = a.psi, b.psi
    drift.add("A", "1h", "v1", np.array([1.0, 0.5]), 0.5)
    drift.psi()
    assert a.psi is not cached_a and b.psi is cached_b


def test_ratios_are_the_largest_psi_over_threshold_of_the_last_computation() -> None:
    drift = DriftWindows({"v1": _reference()}, capacity=50, min_rows=5, fallback_psi=0.5)
    assert drift.ratios() == {}  # not computed yet
    for i in range(10):
        drift.add("A", "1h", "v1", np.array([i * 1e-3, 0.5]), 0.5)
    values = drift.psi()["v1"]
    assert drift.ratios()["v1"] == pytest.approx({k: v / 0.5 for k, v in values.items()})  # uncalibrated: fallback
    assert drift.threshold("v1") == dict.fromkeys(("ret_1", "rsi14", STAGE1), 0.5) and drift.threshold("x") == {}


def _ar1(rng: np.random.Generator, n: int, phi: float, columns: int) -> np.ndarray:
    """Autocorrelated columns (AR(1) with coefficient phi), like slow indicators of consecutive bars."""
    out = np.empty((n, columns))
    out[0] = rng.normal(size=columns)
    noise = rng.normal(size=(n, columns)) * np.sqrt(1 - phi**2)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + noise[t]
    return out


def test_window_psi_equals_each_windows_psi() -> None:
    rng = np.random.default_rng(11)
    bins = quantile_bins(rng.normal(size=3000))
    values = rng.normal(0.2, 1.3, 900)
    got = window_psi(bins, values, 200, stride=7)
    want = [bins.psi(values[s : s + 200]) for s in range(0, 701, 7)]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert len(window_psi(bins, values[:100], 200)) == 0


def test_calibrated_thresholds_hold_zero_drift_windows_and_catch_a_shift() -> None:
    """On autocorrelated columns, the calibrated thresholds are far above the fixed 0.25 of independent rows for a
    slow column, a fresh series from the same process breaches in few windows, and a scaled one in most."""
    rng = np.random.default_rng(12)
    train = np.column_stack([_ar1(rng, 8000, 0.2, 1), _ar1(rng, 8000, 0.98, 1), rng.uniform(size=8000)])
    ref = calibrate(build_reference(("fast", "slow"), train[:, :2], train[:, 2]), train)
    assert ref.thresholds is not None and ref.thresholds.sizes == CALIBRATION_SIZES
    slow, fast = ref.thresholds.values["slow"], ref.thresholds.values["fast"]
    assert min(slow) > 0.25 > max(fast) and all(a > b for a, b in zip(slow, fast, strict=True))
    fresh = np.column_stack([_ar1(rng, 8000, 0.2, 1), _ar1(rng, 8000, 0.98, 1), rng.uniform(size=8000)])
    ratios = np.array([ref.psi(fresh[s : s + 300]) / ref.limits(300) for s in range(0, 7700, 10)])
    assert (ratios > 1).any(axis=1).mean() <= 0.03
    scaled = fresh * [3.0, 1.0, 1.0]
    ratios = np.array([ref.psi(scaled[s : s + 300]) / ref.limits(300) for s in range(0, 7700, 10)])
    assert (ratios[:, 0] > 1).mean() > 0.9


def test_limits_by_window_size_and_fallback() -> None:
    rng = np.random.default_rng(13)
    train = np.column_stack([_ar1(rng, 3000, 0.5, 2), rng.uniform(size=3000)])
    plain = build_reference(("a", "b"), train[:, :2], train[:, 2])
    assert plain.limits(10).tolist() == [FALLBACK_PSI] * 3 and plain.limits(500, fallback=1.0).tolist() == [1.0] * 3
    ref = calibrate(plain, train, sizes=(200, 400, 800, 1200))  # 3000 rows hold 3 disjoint windows up to 1000 rows
    assert ref.thresholds is not None and ref.thresholds.sizes == (200, 400, 800)
    table = np.array([ref.thresholds.values[n] for n in ref.names]).T
    assert ref.limits(MIN_ROWS - 1) is None  # too small to be judged
    assert ref.limits(200).tolist() == ref.limits(399).tolist() == table[0].tolist()
    assert ref.limits(400).tolist() == table[1].tolist() and ref.limits(10_000).tolist() == table[2].tolist()
    assert calibrate(plain, train[:500]) is plain  # not 3 disjoint windows of 200 rows: left uncalibrated


def test_calibration_leaves_out_rows_without_a_stage1_value() -> None:
    """NaN Stage 1 (no out-of-sample prediction before the first walk-forward test fold): the Stage 1 bins and
    windows come from the rows that have one; the features from every row."""
    rng = np.random.default_rng(14)
    x = _ar1(rng, 4000, 0.5, 1)
    s1 = np.where(np.arange(4000) < 1000, np.nan, rng.uniform(size=4000))
    ref = build_reference(("a",), x, s1, stage1_source="out-of-sample: test")
    assert ref.rows == 4000 and ref.bins[STAGE1].expected.sum() == pytest.approx(1.0)
    ref = calibrate(ref, np.column_stack([x, s1]), sizes=(200, 1000, 1200))
    assert ref.thresholds is not None and ref.thresholds.sizes == (200, 1000)  # 3,000 Stage 1 rows: not 3 x 1,200
    again = Reference.from_json(json.loads(json.dumps(ref.to_json())))
    assert again.stage1_source == "out-of-sample: test" and again.thresholds == ref.thresholds


def test_old_references_without_thresholds_load_and_fall_back() -> None:
    rng = np.random.default_rng(15)
    old = build_reference(("a",), rng.normal(size=(500, 1)), rng.uniform(size=500)).to_json()
    assert "thresholds" not in old and "stage1_source" not in old
    ref = Reference.from_json(old)
    assert ref.thresholds is None and ref.stage1_source == "" and ref.limits(WINDOW_ROWS).tolist() == [FALLBACK_PSI] * 2


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.update(sizes=[300, 200]),
        lambda t: t.update(rate=0),
        lambda t: t["values"].pop("a"),
        lambda t: t["values"].update(a=[0.1]),
        lambda t: t["values"].update(a=[0.0, 0.1]),
        lambda t: t["values"].update(a=[float("inf"), 0.1]),
        lambda t: t.update(values=None),
    ],
)
def test_thresholds_from_json_refuse_malformed(mutate) -> None:
    good = AlertThresholds((200, 300), {"a": (0.5, 0.4), STAGE1: (0.2, 0.1)}, 0.01).to_json()
    assert AlertThresholds.from_json(good, ("a", STAGE1)).values["a"] == (0.5, 0.4)
    mutate(good)
    with pytest.raises(DriftReferenceError):
        AlertThresholds.from_json(good, ("a", STAGE1))


def test_drift_windows_judge_each_window_by_its_own_size() -> None:
    """A window of 250 rows is held to the 200-row threshold, one of 450 to the 400-row one; the ratio is the
    largest over the version's windows, and windows below the smallest calibrated size are not judged."""
    rng = np.random.default_rng(16)
    train = np.column_stack([_ar1(rng, 6000, 0.5, 2), rng.uniform(size=6000)])
    ref = calibrate(build_reference(("a", "b"), train[:, :2], train[:, 2]), train, sizes=(200, 400))
    drift = DriftWindows({"v": ref}, capacity=500, min_rows=100)
    for row in train[:150]:
        drift.add("A", "1h", "v", row[:2], float(row[2]))
    drift.psi()
    assert drift.ratios()["v"] == {}  # 150 rows: PSI counts (min_rows) but no threshold is calibrated that small
    for row in train[150:250]:
        drift.add("A", "1h", "v", row[:2], float(row[2]))
    for row in train[1000:1450]:
        drift.add("B", "1h", "v", row[:2], float(row[2]))
    drift.psi()
    a, b = drift._windows[("A", "1h", "v")], drift._windows[("B", "1h", "v")]
    assert a.ratio == pytest.approx(a.psi / ref.limits(200)) and b.ratio == pytest.approx(b.psi / ref.limits(400))
    assert drift.ratios()["v"] == pytest.approx(dict(zip(ref.names, np.maximum(a.ratio, b.ratio), strict=True)))
    assert drift.threshold("v") == pytest.approx(dict(zip(ref.names, ref.limits(500), strict=True)))


def test_reference_psi_of_all_columns_equals_each_columns_psi() -> None:
    rng = np.random.default_rng(5)
    train = np.column_stack([rng.normal(size=3000), np.repeat([0.0, 1.0], 1500), np.full(3000, 2.0)])
    ref = build_reference(("a", "ties", "constant"), train, rng.uniform(size=3000))
    window = np.column_stack([rng.normal(0.5, 2, 400), rng.choice([0.0, 1.0, 5.0], 400), np.full(400, 3.0),
                              rng.uniform(0, 0.5, 400)])  # fmt: skip
    window[0, 0] = ref.bins["a"].edges[3]  # exactly on an edge: the lower bin in both
    each = [ref.bins[name].psi(window[:, j]) for j, name in enumerate(ref.names)]
    assert ref.psi(window) == pytest.approx(each, rel=1e-12, abs=1e-12)
    assert np.isfinite(ref.psi(np.empty((0, 4)))).all()  # no rows: finite (every actual share floored)
