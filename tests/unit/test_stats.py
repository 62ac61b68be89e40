"""Welch t-test, two-proportion z-test and the winner rule, against scipy and a manual reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments.stats import compare, two_proportion_z_test, welch_t_test

pytestmark = pytest.mark.unit

A = [1.5, -2.0, 3.25, 0.0, 4.5, -1.25, 2.0, 6.0, -3.5, 1.0, 0.75, -0.5]
B = [2.5, 3.0, -1.0, 5.5, 4.0, 7.25, -0.25, 3.5, 2.0, 6.5, 1.5, 4.75, 0.5, -2.0, 3.0]
TOL = {"rel": 1e-9, "abs": 1e-12}


def approx(x: float) -> object:
    return pytest.approx(x, **TOL)


def test_welch_matches_scipy() -> None:
    ref = sps.ttest_ind(B, A, equal_var=False)
    ci = ref.confidence_interval(0.95)
    got = welch_t_test(A, B)
    assert got["t"] == approx(ref.statistic)
    assert got["p_value"] == approx(ref.pvalue)
    assert got["df"] == approx(ref.df)
    assert got["diff"] == approx(np.mean(B) - np.mean(A))
    assert got["ci95"] == [approx(ci.low), approx(ci.high)]


def test_welch_df_is_welch_satterthwaite() -> None:
    va, vb = np.var(A, ddof=1) / len(A), np.var(B, ddof=1) / len(B)
    expected = (va + vb) ** 2 / (va**2 / (len(A) - 1) + vb**2 / (len(B) - 1))
    assert welch_t_test(A, B)["df"] == approx(expected)


def manual_z(ha: int, na: int, hb: int, nb: int) -> tuple[float, float, float, float]:
    """Textbook two-proportion z-test: pooled SE for z, unpooled SE for the 95% Wald CI."""
    pa, pb = ha / na, hb / nb
    pooled = (ha + hb) / (na + nb)
    z = (pb - pa) / math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    p_value = math.erfc(abs(z) / math.sqrt(2))
    half = 1.959963984540054 * math.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    return z, p_value, pb - pa - half, pb - pa + half


def test_z_test_matches_manual_reference() -> None:
    z, p, lo, hi = manual_z(45, 120, 70, 130)
    got = two_proportion_z_test(45, 120, 70, 130)
    assert got["z"] == approx(z)
    assert got["p_value"] == approx(p)
    assert got["ci95"] == [approx(lo), approx(hi)]
    assert got["diff"] == approx(70 / 130 - 45 / 120)


def test_compare_hit_rate_uses_pips_above_zero() -> None:
    result = compare(A, B)
    ha, hb = sum(x > 0 for x in A), sum(x > 0 for x in B)
    z, p, lo, hi = manual_z(ha, len(A), hb, len(B))
    assert result["hit_rate"]["z"] == approx(z)
    assert result["hit_rate"]["p_value"] == approx(p)
    assert result["hit_rate"]["ci95"] == [approx(lo), approx(hi)]
    assert result["pips"]["p_value"] == approx(sps.ttest_ind(B, A, equal_var=False).pvalue)


def test_compare_shape() -> None:
    result = compare(A, B)
    assert set(result) >= {"pips", "hit_rate", "min_samples", "winner", "reason"}
    assert set(result["pips"]) >= {"t", "df", "p_value", "diff", "ci95"}
    assert set(result["hit_rate"]) >= {"z", "p_value", "diff", "ci95"}
    assert result["min_samples"] == 30


def _samples(n: int, mean_a: float, mean_b: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(mean_a, 5.0, n), rng.normal(mean_b, 5.0, n)


def test_no_winner_below_min_samples_even_if_significant() -> None:
    a, b = _samples(29, 0.0, 20.0)
    result = compare(a, b)
    assert result["pips"]["p_value"] < 1e-6
    assert result["winner"] is None
    assert "30" in result["reason"]


def test_winner_b_when_significantly_better() -> None:
    a, b = _samples(40, 0.0, 10.0)
    result = compare(a, b)
    assert result["winner"] == "B"
    assert "Welch" in result["reason"]


def test_winner_a_when_b_is_significantly_worse() -> None:
    a, b = _samples(40, 10.0, 0.0)
    assert compare(a, b)["winner"] == "A"


def test_no_winner_when_not_significant() -> None:
    a, b = _samples(200, 1.0, 1.0, seed=3)
    result = compare(a, b)
    assert result["pips"]["p_value"] >= 0.05
    assert result["winner"] is None
    assert "no significant difference" in result["reason"]


def test_alpha_and_min_samples_are_parameters() -> None:
    a, b = _samples(10, 0.0, 10.0)
    assert compare(a, b, min_samples=10)["winner"] == "B"
    assert compare(a, b, min_samples=10, alpha=1e-30)["winner"] is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([], []),
        ([1.0], [2.0, 3.0]),
        ([1.0, 2.0], []),
        ([2.0] * 40, [2.0] * 40),
        ([1.0] * 40, [3.0] * 40),
        ([-1.0] * 40, [-2.0] * 40),
        ([0.1, 0.1, 0.1], [0.1, 0.1, 0.1]),
    ],
)
def test_edge_cases_are_json_safe(a: list[float], b: list[float]) -> None:
    result = compare(a, b)
    json.dumps(result, allow_nan=False)
    assert result["winner"] is None
    assert result["pips"]["p_value"] is None
    assert result["pips"]["note"]


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, on the constant sample
def test_zero_variance_in_one_variant_still_tests() -> None:
    a, b = [2.0] * 30, list(np.linspace(0.0, 10.0, 30))
    ref = sps.ttest_ind(b, a, equal_var=False)
    got = compare(a, b)["pips"]
    assert got["p_value"] == approx(ref.pvalue)
    assert got["df"] == approx(29.0)


def test_all_hits_makes_z_undefined_without_nan() -> None:
    got = compare([1.0, 2.0, 3.0], [4.0, 5.0])["hit_rate"]
    json.dumps(got, allow_nan=False)
    assert got["z"] is None and got["p_value"] is None
    assert got["diff"] == 0.0


def test_non_finite_pips_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        compare([1.0, float("nan")], [1.0, 2.0])


def test_the_normal_quantile_constant_is_scipys() -> None:
    from scipy import stats as sps

    from experiments.stats import Z_975

    assert Z_975 == pytest.approx(float(sps.norm.ppf(0.975)), abs=1e-15)
