"""Input drift (aifx/drift.py): quantile bins, PSI, references, rolling windows."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from aifx.drift import (
    EPSILON,
    STAGE1,
    Bins,
    DriftReferenceError,
    DriftWindows,
    Reference,
    Window,
    build_reference,
    psi,
    quantile_bins,
)

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


def test_worst_is_the_largest_psi_of_the_last_computation() -> None:
    drift = DriftWindows({"v1": _reference()}, capacity=50, min_rows=5)
    assert drift.worst("v1") is None and drift.worst("nope") is None
    for i in range(10):
        drift.add("A", "1h", "v1", np.array([i * 1e-3, 0.5]), 0.5)
    assert drift.worst("v1") is None  # not computed yet
    values = drift.psi()["v1"]
    assert drift.worst("v1") == max(values.values())


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
