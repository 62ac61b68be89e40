"""aifx.srm: the anytime-valid sample-ratio-mismatch check. The e-value by hand, the answer's shape, and a
simulation read after every 10 assignments: false alarms over a whole experiment and power (figures printed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.special import gammaln

from aifx import srm

pytestmark = pytest.mark.unit

RUNS, EVERY, ASSIGNMENTS, SEED = 2000, 10, 20_000, 20260026
READS = np.arange(EVERY, ASSIGNMENTS + 1, EVERY)


def polya_e(sequence: list[int], shares: list[float], concentration: float = 100.0) -> float:
    """The mixture's e-value one assignment at a time: the Polya urn's predictive over the split's probability."""
    p = np.asarray(shares, dtype=float) / sum(shares)
    a, seen, e = concentration * p, np.zeros(len(p)), 1.0
    for t, g in enumerate(sequence):
        e *= (a[g] + seen[g]) / (concentration + t) / p[g]
        seen[g] += 1
    return e


def scipy_log_e(counts: list[int], shares: list[float], concentration: float = 100.0) -> float:
    """The closed form with scipy.special.gammaln."""
    x, p = np.asarray(counts, dtype=float), np.asarray(shares, dtype=float) / sum(shares)
    a = concentration * p
    log_b = lambda v: gammaln(v).sum() - gammaln(v.sum())  # noqa: E731
    return float(log_b(a + x) - log_b(a) - x @ np.log(p))


def test_e_value_matches_a_direct_computation_for_small_counts() -> None:
    cases = [([0, 0, 1, 0], [0.5, 0.5]), ([1, 1, 1, 0, 1], [0.8, 0.2]), ([2, 0, 1, 1, 2, 0, 0], [1, 2, 3])]
    for sequence, shares in cases:
        counts = [sequence.count(g) for g in range(len(shares))]
        direct = polya_e(sequence, shares)
        assert math.isclose(math.exp(srm.log_e_value(counts, shares)), direct, rel_tol=1e-12)
        assert math.isclose(float(srm.log_e_value(counts, shares)), scipy_log_e(counts, shares), abs_tol=1e-10)
        got = srm.srm_check({str(g): c for g, c in enumerate(counts)}, {str(g): s for g, s in enumerate(shares)})
        assert math.isclose(got["e_value"], direct, rel_tol=1e-12)
        assert got["p_value"] == pytest.approx(min(1.0, 1.0 / direct), rel=1e-12)
    e = polya_e([0, 0, 1], [0.5, 0.5], concentration=2.0)  # (1/2)(2/3)(1/4) over 1/8 = 2/3
    assert math.isclose(e, 2 / 3) and math.isclose(math.exp(srm.log_e_value([2, 1], [1, 1], 2.0)), 2 / 3)
    assert math.isclose(float(srm.lgamma(0.5)), math.log(math.sqrt(math.pi)), rel_tol=1e-15)


def test_large_counts_match_scipy() -> None:
    for counts, shares in (([5300, 4700], [0.5, 0.5]), ([820, 180], [0.8, 0.2]), ([100, 500, 400], [0.2, 0.4, 0.4])):
        assert math.isclose(float(srm.log_e_value(counts, shares)), scipy_log_e(counts, shares), abs_tol=1e-8)


def test_check_flags_at_one_over_alpha_and_keeps_its_shape() -> None:
    fine = srm.srm_check({"A": 5050, "B": 4950}, {"A": 0.5, "B": 0.5})
    assert set(fine) == {"chi2", "p_value", "e_value", "flagged", "threshold", "total", "rule"}
    assert fine["flagged"] is False and fine["total"] == 10_000 and fine["threshold"] == 0.001
    assert fine["chi2"] == pytest.approx(1.0) and fine["p_value"] == 1.0 and fine["e_value"] < 1
    broken = srm.srm_check({"A": 5300, "B": 4700}, {"A": 0.5, "B": 0.5})
    assert broken["flagged"] is True and broken["e_value"] >= 1000
    assert broken["p_value"] == pytest.approx(1 / broken["e_value"])
    assert srm.srm_check({"A": 5300, "B": 4700}, {"A": 0.5, "B": 0.5}, alpha=1e-9)["flagged"] is False
    for counts in ({"A": 5300, "B": 4700}, {"A": 5050, "B": 4950}, {"A": 520, "B": 480}):
        got = srm.srm_check(counts, {"A": 0.5, "B": 0.5})
        assert got["flagged"] is (got["e_value"] >= 1000) is (got["p_value"] <= 0.001)
    huge = srm.srm_check({"A": 600_000, "B": 400_000}, {"A": 0.5, "B": 0.5})  # e past the float range
    assert huge["flagged"] is True and huge["e_value"] is None and huge["p_value"] == 0.0
    empty = srm.srm_check({}, {"A": 0.5, "B": 0.5})
    assert empty["flagged"] is False and empty["e_value"] == 1.0 and empty["p_value"] == 1.0
    one = srm.srm_check({"A": 10}, {"A": 1.0, "B": 0.0})
    assert (one["chi2"], one["p_value"], one["e_value"], one["flagged"], one["total"]) == (0.0, 1.0, 1.0, False, 10)
    zero = srm.srm_check({"A": 10, "B": 1}, {"A": 1.0, "B": 0.0})
    assert zero["flagged"] is True and zero["p_value"] == 0.0 and zero["e_value"] is None
    for got in (fine, broken, huge, empty, zero):
        assert json.loads(json.dumps(got, allow_nan=False)) == got
    with pytest.raises(ValueError):
        srm.srm_check({"A": 1, "C": 2}, {"A": 0.5, "B": 0.5})
    with pytest.raises(ValueError):
        srm.srm_check({"A": 1}, {"A": -0.5, "B": 0.5})
    with pytest.raises(ValueError):
        srm.srm_check({"A": -1}, {"A": 0.5, "B": 0.5})


def simulate(rng: np.random.Generator, true_share_b: float, expected_share_b: float) -> np.ndarray:
    """Per run, the first read (assignments) at which the check flags (0 = never), reading every EVERY assignments."""
    b = np.cumsum(rng.binomial(EVERY, true_share_b, size=(RUNS, READS.size)), axis=1)
    counts = np.stack([READS - b, b], axis=-1)
    log_e = srm.log_e_value(counts, [1.0 - expected_share_b, expected_share_b])
    flagged = log_e >= -math.log(srm.ALPHA)
    spot = (7, 1234)  # srm_check itself at a few reads: the same figure
    check = srm.srm_check({"A": int(counts[spot][0]), "B": int(counts[spot][1])},
                          {"A": 1.0 - expected_share_b, "B": expected_share_b})  # fmt: skip
    assert check["flagged"] is bool(flagged[spot]) and check["p_value"] == pytest.approx(min(1, math.exp(-log_e[spot])))
    return np.where(flagged.any(axis=1), READS[flagged.argmax(axis=1)], 0)


def test_simulated_false_alarms_over_a_whole_experiment_and_power(capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    false_alarms = {split: float(np.mean(simulate(rng, split, split) > 0)) for split in (0.5, 0.2)}
    detected_at = simulate(rng, 0.47, 0.5)
    power = float(np.mean(detected_at > 0))
    median = float(np.median(detected_at[detected_at > 0]))
    pooled = float(np.mean(list(false_alarms.values())))
    with capsys.disabled():
        print(f"\nSRM, {RUNS} runs per row, read every {EVERY} of {ASSIGNMENTS} assignments, alpha {srm.ALPHA}: "
              f"false alarms over the whole run {false_alarms[0.5]:.4f} (split 0.5), {false_alarms[0.2]:.4f} "
              f"(split 0.2), {pooled:.4f} pooled (target <= 0.001); 0.5 observed as 0.47 detected in {power:.4f} "
              f"of runs, median at {median:.0f} assignments; {time.perf_counter() - t0:.1f} s")  # fmt: skip
    assert all(rate <= 0.003 for rate in false_alarms.values())
    assert power >= 0.90


def test_serving_import_pulls_no_scipy() -> None:
    code = "import sys, aifx.srm; print(sorted({'scipy', 'statsmodels', 'pandas', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
