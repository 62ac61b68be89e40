"""B-vs-A outcome statistics: Welch t-test on pips, two-proportion z-test on hit rate.

Every function returns plain Python floats or None (never NaN/inf), so results are JSON-safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CI_LEVEL = 0.95
Z_975 = 1.959963984540054  # scipy.stats.norm.ppf(0.975), checked in tests/unit/test_stats.py


def _sps() -> Any:
    """scipy.stats, imported on first use: every serving process imports this module, few compute tests."""
    from scipy import stats

    return stats


def _as_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Float64 1-d array; non-finite input is a programming error."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise ValueError("pips must be finite numbers")
    return arr


def _variance(arr: np.ndarray) -> float:
    """Sample variance (ddof=1), exactly 0.0 when every value is identical."""
    if arr.size < 2 or float(np.ptp(arr)) == 0.0:
        return 0.0
    return float(np.var(arr, ddof=1))


def _finite(x: float) -> float | None:
    """x as float, or None when NaN/inf."""
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Moments:
    """What a Welch test needs of one sample: its size, sum and sum of squares (SQL aggregates)."""

    n: int
    total: float
    total_sq: float

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        return cls(int(values.size), float(values.sum()), float(np.square(values).sum()))

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        """Sample variance (ddof=1), never negative (rounding of sum of squares)."""
        if self.n < 2:
            return 0.0
        return max((self.total_sq - self.total * self.total / self.n) / (self.n - 1), 0.0)


def welch_t_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Welch t-test of mean(b) - mean(a): t, Welch–Satterthwaite df, two-sided p, 95% CI."""
    xa, xb = _as_array(a), _as_array(b)
    return welch_from_moments(Moments.of(xa), Moments.of(xb), _variance(xa), _variance(xb))


def welch_from_moments(
    a: Moments, b: Moments, var_a: float | None = None, var_b: float | None = None
) -> dict[str, Any]:
    """The Welch test from each sample's moments; every number finite or None."""
    na, nb = a.n, b.n
    out: dict[str, Any] = {"n_a": na, "n_b": nb, "mean_a": None, "mean_b": None, "diff": None}
    out |= {"t": None, "df": None, "p_value": None, "ci95": None, "note": None}
    if na:
        out["mean_a"] = _finite(a.mean)
    if nb:
        out["mean_b"] = _finite(b.mean)
    if out["mean_a"] is not None and out["mean_b"] is not None:
        out["diff"] = _finite(out["mean_b"] - out["mean_a"])
    if na < 2 or nb < 2:
        out["note"] = "needs at least 2 outcomes per variant"
        return out
    va = (a.variance if var_a is None else var_a) / na
    vb = (b.variance if var_b is None else var_b) / nb
    if out["diff"] is None or not math.isfinite(va + vb):
        out["note"] = "outcomes too large to compare"
        return out
    se = math.sqrt(va + vb)
    if se == 0.0:
        out["note"] = "zero variance in both variants; t-test undefined"
        return out
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    t = out["diff"] / se
    sps = _sps()
    half = float(sps.t.ppf(0.5 + CI_LEVEL / 2, df)) * se
    out |= {"t": _finite(t), "df": _finite(df), "p_value": _finite(2.0 * float(sps.t.sf(abs(t), df)))}
    bounds = [_finite(out["diff"] - half), _finite(out["diff"] + half)]
    out["ci95"] = bounds if None not in bounds else None
    return out


def two_proportion_z_test(hits_a: int, n_a: int, hits_b: int, n_b: int) -> dict[str, Any]:
    """z-test of p_b - p_a (pooled SE for the test, unpooled SE for the 95% CI)."""
    out: dict[str, Any] = {"n_a": n_a, "n_b": n_b, "rate_a": None, "rate_b": None, "diff": None}
    out |= {"z": None, "p_value": None, "ci95": None, "note": None}
    if n_a < 1 or n_b < 1:
        out["note"] = "needs at least 1 outcome per variant"
        return out
    pa, pb = hits_a / n_a, hits_b / n_b
    diff = pb - pa
    out |= {"rate_a": pa, "rate_b": pb, "diff": diff}
    se_ci = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    if se_ci > 0.0:
        out["ci95"] = [diff - Z_975 * se_ci, diff + Z_975 * se_ci]
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se_test = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se_test == 0.0:
        out["note"] = "every outcome in both variants is a hit (or a miss); z-test undefined"
        return out
    z = diff / se_test
    out |= {"z": z, "p_value": 2.0 * float(_sps().norm.sf(abs(z)))}
    if out["ci95"] is None:
        out["note"] = "a hit rate of 0 or 1 in both variants leaves the Wald interval undefined"
    return out


def _decide(pips: dict[str, Any], n_a: int, n_b: int, min_samples: int, alpha: float) -> tuple[Any, str]:
    """Winner and reason, decided on the Welch t-test of mean pips."""
    if n_a < min_samples or n_b < min_samples:
        return None, (
            f"not enough outcomes: A has {n_a}, B has {n_b}; each variant needs >= {min_samples} "
            "before a winner is declared (decided on the Welch t-test of mean pips)"
        )
    p = pips["p_value"]
    if p is None:
        return None, f"Welch t-test of mean pips undefined: {pips['note']}"
    if p >= alpha:
        return None, f"no significant difference in mean pips (Welch t-test p={p:.4g} >= alpha={alpha:g})"
    winner = "B" if pips["diff"] > 0 else "A"
    return winner, (
        f"{winner} has higher mean pips (Welch t-test p={p:.4g} < alpha={alpha:g}, diff B-A={pips['diff']:.4g} pips)"
    )


def compare(
    a_pips: Sequence[float] | np.ndarray,
    b_pips: Sequence[float] | np.ndarray,
    min_samples: int = 30,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Full B-vs-A comparison: pips Welch test, hit-rate z-test (hit = pips > 0) and the winner."""
    xa, xb = _as_array(a_pips), _as_array(b_pips)
    return compare_moments(Moments.of(xa), int((xa > 0).sum()), Moments.of(xb), int((xb > 0).sum()), min_samples, alpha)


def compare_moments(
    a: Moments, hits_a: int, b: Moments, hits_b: int, min_samples: int = 30, alpha: float = 0.05
) -> dict[str, Any]:
    """compare() from per-variant aggregates (count, sum, sum of squares, hits): no outcome is loaded."""
    pips = welch_from_moments(a, b)
    hit = two_proportion_z_test(hits_a, a.n, hits_b, b.n)
    winner, reason = _decide(pips, a.n, b.n, min_samples, alpha)
    return {
        "pips": pips,
        "hit_rate": hit,
        "min_samples": min_samples,
        "alpha": alpha,
        "winner": winner,
        "reason": reason,
        # valid when read once at a size fixed in advance; re-read on growing data it finds false winners
        # (docs/statistics.md): the paired view's always-valid state is the one to act on
        "method": "fixed_horizon",
    }
