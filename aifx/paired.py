"""Which of two versions is better on the same bars (issue 13): R per bar, Newey-West, an always-valid
confidence sequence on the paired difference, the decision state, Stage 1 scores, drawdown.

Pure (numpy, math, stdlib): serving processes import it. Every summary is JSON-safe (None, never NaN).
docs/statistics.md explains the method and reports its simulated false-winner rate and power.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from aifx import trade

HORIZON = trade.TradeRule().horizon_bars  # 12: bars a trade lasts, so trades overlap within 12 bars
EXPECTED_BARS = 4800  # the sample size (bars) the confidence sequence is tightest at: ~200 blocks
MIN_BLOCKS = 20  # no decision before 20 complete blocks (480 bars at the default horizon)
MIN_EFFECT = 0.05  # R per bar: a difference smaller than this does not matter
ALPHA = 0.05
MIN_ATR_PIPS = 0.5  # an ATR under half a pip is a data error, and R would divide by almost nothing
MAX_ABS_R = 20.0  # a stop is ~-1 R and a take profit ~+2 R: beyond 20 R a bar's figures are broken

COLLECTING, B_BETTER, A_BETTER = "collecting", "b_better", "a_better"
B_BETTER_BELOW_MIN_EFFECT = "b_better_below_min_effect"
NO_MEANINGFUL_DIFFERENCE, GUARDRAIL_BREACH = "no_meaningful_difference", "guardrail_breach"
STATES = (COLLECTING, B_BETTER, B_BETTER_BELOW_MIN_EFFECT, A_BETTER, NO_MEANINGFUL_DIFFERENCE, GUARDRAIL_BREACH)
EXCLUSIONS = ("atr_invalid", "atr_below_min", "r_not_finite", "r_beyond_max")  # why a bar is left out

FIELDS = ("signal", "result", "pips", "p_reversal", "label_held")
_SQRT2 = math.sqrt(2.0)


class PairedSeries(NamedTuple):
    """Per-bar R of a and b and b - a over the kept bars in order, the kept rows' indices, exclusions by reason."""

    r_a: np.ndarray
    r_b: np.ndarray
    diff: np.ndarray
    kept: list[int]
    excluded: dict[str, int]


def _finite(x: Any) -> float | None:
    """x as a float, or None when missing, NaN or infinite (JSON-safe)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def r_value(signal: str | None, pips: float | None, atr: float, pip: float) -> float:
    """A version's result on a bar in R: pips after cost / ATR in pips; a hold or a missing result is 0.0."""
    if signal not in trade.SIDES or pips is None or not math.isfinite(float(pips)):
        return 0.0
    atr_pips = float(atr) / float(pip)
    if not (math.isfinite(atr_pips) and atr_pips > 0):
        raise ValueError(f"atr and pip must be finite and positive, got atr={atr!r}, pip={pip!r}")
    return float(pips) / atr_pips


def _side(row: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    """One version's fields of a paired row: nested (row['a']) as EvaluationStore.paired() gives, or flat a_*."""
    nested = row.get(side)
    if isinstance(nested, Mapping):
        return nested
    return {f: row.get(f"{side}_{f}") for f in FIELDS}


def paired_rows(rows: Sequence[Mapping[str, Any]]) -> PairedSeries:
    """R of a and b per bar and diff = r_b - r_a, in the given (bar_time) order, without the excluded bars."""
    excluded = dict.fromkeys(EXCLUSIONS, 0)
    kept, r_a, r_b = [], [], []
    for i, row in enumerate(rows):
        ra, rb, why = bar_r(row)
        if why is not None:
            excluded[why] += 1
            continue
        kept.append(i)
        r_a.append(ra)
        r_b.append(rb)
    a, b = np.array(r_a, dtype=np.float64), np.array(r_b, dtype=np.float64)
    return PairedSeries(a, b, b - a, kept, excluded)


def bar_r(row: Mapping[str, Any]) -> tuple[float, float, str | None]:
    """(r_a, r_b, None) of a paired row, or (nan, nan, reason) when the bar must be left out of every statistic."""
    try:
        atr, pip = float(row["atr"]), float(row["pip"])
    except (TypeError, ValueError):
        return math.nan, math.nan, "atr_invalid"
    atr_pips = atr / pip if math.isfinite(atr) and math.isfinite(pip) and pip > 0 else math.nan
    if not math.isfinite(atr_pips):
        return math.nan, math.nan, "atr_invalid"
    if atr_pips < MIN_ATR_PIPS:
        return math.nan, math.nan, "atr_below_min"
    sa, sb = _side(row, "a"), _side(row, "b")
    ra = r_value(sa.get("signal"), sa.get("pips"), atr, pip)
    rb = r_value(sb.get("signal"), sb.get("pips"), atr, pip)
    if not (math.isfinite(ra) and math.isfinite(rb)):
        return math.nan, math.nan, "r_not_finite"
    if max(abs(ra), abs(rb)) > MAX_ABS_R:
        return math.nan, math.nan, "r_beyond_max"
    return ra, rb, None


# -- Newey-West --------------------------------------------------------------------------------------


def block_bars(horizon: int = HORIZON) -> int:
    """Bars per block and the least Newey-West lag: 2 x horizon, twice the span within which trades overlap."""
    return 2 * int(horizon)


def default_lag(n: int, horizon: int = HORIZON) -> int:
    """Newey-West lag: at least 2 x the trade horizon, else the usual floor(4 (n/100)^(2/9))."""
    # Bartlett weights 1 - j/(L+1) shrink lag j; with L = horizon the lags just under it, where 12-bar trades
    # still overlap, would get almost no weight (under-coverage), so L leaves a whole horizon of room.
    return max(block_bars(horizon), int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0))))


def newey_west_se(x: Sequence[float] | np.ndarray, lag: int | None = None, horizon: int = HORIZON) -> float:
    """HAC (Bartlett) standard error of mean(x), no small-sample correction (statsmodels' use_correction=False).

    var = (g0 + 2 sum_{j=1..L} (1 - j/(L+1)) g_j) / n^2 with g_j = sum_t e_t e_{t-j}, e = x - mean(x):
    exactly OLS(x, ones).fit(cov_type="HAC", cov_kwds={"maxlags": L}).bse[0], whose HAC default is
    use_correction=False. NaN for fewer than 2 values.
    """
    e = np.asarray(x, dtype=np.float64).reshape(-1)
    n = e.size
    if n < 2:
        return math.nan
    lags = default_lag(n, horizon) if lag is None else int(lag)
    if lags < 0:
        raise ValueError(f"lag must be >= 0, got {lag!r}")
    e = e - e.mean()
    s = float(e @ e)
    for j in range(1, min(lags, n - 1) + 1):
        s += 2.0 * (1.0 - j / (lags + 1.0)) * float(e[j:] @ e[:-j])
    return math.sqrt(max(s, 0.0)) / n


# -- always-valid inference on the paired difference ------------------------------------------------


def block_means(diff: Sequence[float] | np.ndarray, block: int) -> np.ndarray:
    """Means of consecutive non-overlapping blocks of `block` values; a trailing partial block is left out."""
    x = np.asarray(diff, dtype=np.float64)
    k = x.shape[-1] // block
    return x[..., : k * block].reshape(*x.shape[:-1], k, block).mean(axis=-1)


def mixture_rho2(expected_blocks: float, alpha: float = ALPHA) -> float:
    """rho^2 that makes the normal-mixture boundary tightest at `expected_blocks` (u = -2 log a + log(1 + u))."""
    u = -2.0 * math.log(alpha)
    for _ in range(100):  # a contraction: converges to machine precision in a few dozen steps
        u = -2.0 * math.log(alpha) + math.log1p(u)
    return u / max(float(expected_blocks), 1.0)


def mixture_margin(k: np.ndarray | float, alpha: float, rho2: float) -> np.ndarray:
    """Unit-variance half-width at k observations: sqrt(2 (k r2 + 1) / (k^2 r2) * log(sqrt(k r2 + 1) / alpha))."""
    k = np.asarray(k, dtype=np.float64)
    return np.sqrt(2.0 * (k * rho2 + 1.0) / (k * k * rho2) * np.log(np.sqrt(k * rho2 + 1.0) / alpha))


def cs_path(means: np.ndarray, alpha: float = ALPHA, rho2: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the confidence sequence after each of the k = 1..K block means (last axis); NaN for k < 2."""
    y = np.asarray(means, dtype=np.float64)
    k = np.arange(1, y.shape[-1] + 1, dtype=np.float64)
    r2 = mixture_rho2(EXPECTED_BARS / block_bars(), alpha) if rho2 is None else rho2
    s1, s2 = np.cumsum(y, axis=-1), np.cumsum(y * y, axis=-1)
    mean = s1 / k
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(s2 - s1 * mean, 0.0) / (k - 1.0)
        half = np.sqrt(var) * mixture_margin(k, alpha, r2)
    half = np.where(k >= 2, half, np.nan)
    return mean - half, mean + half


def confidence_sequence(
    diff: Sequence[float] | np.ndarray,
    horizon: int = HORIZON,
    alpha: float = ALPHA,
    expected_bars: int = EXPECTED_BARS,
) -> tuple[float | None, float | None, int]:
    """Always-valid (low, high, blocks) for the mean per-bar difference, from block means of 2 x horizon bars.

    Block means Y_1..Y_k of consecutive 2*horizon-bar blocks are nearly independent (12-bar trades
    overlap only within 12 bars). The asymptotic confidence sequence of Waudby-Smith, Arnold, Wu and
    Ramdas (2021, "Time-uniform central limit theory and asymptotic confidence sequences", normal
    mixture, Robbins 1970) is  mean(Y) +/- sd(Y) * sqrt(2 (k rho^2 + 1) / (k^2 rho^2) * log(sqrt(k rho^2 + 1)
    / alpha)), with sd the sample standard deviation (ddof=1) and rho^2 = u / k* tightest at
    k* = expected_bars / block blocks (u solves u = -2 log alpha + log(1 + u)). It covers the mean at
    every k at once with probability ~1 - alpha, so it may be read after every bar. None before 2 blocks.
    """
    block = block_bars(horizon)
    means = block_means(diff, block)
    k = int(means.size)
    if k < 2:
        return None, None, k
    low, high = cs_path(means, alpha, mixture_rho2(expected_bars / block, alpha))
    return _finite(low[-1]), _finite(high[-1]), k


def comparison_state(
    low: float | None,
    high: float | None,
    blocks: int,
    min_effect: float = MIN_EFFECT,
    guardrail_breached: bool = False,
    min_blocks: int = MIN_BLOCKS,
) -> str:
    """First that holds: breach, too few blocks, inside +/- min_effect, low > min_effect, low > 0, high < 0."""
    if guardrail_breached:
        return GUARDRAIL_BREACH
    if low is None or high is None or blocks < min_blocks or not (math.isfinite(low) and math.isfinite(high)):
        return COLLECTING
    if -min_effect < low and high < min_effect:
        return NO_MEANINGFUL_DIFFERENCE  # rules out a difference of min_effect either way, even if it excludes 0
    if low > min_effect:
        return B_BETTER  # rules out every effect up to min_effect: the only state a policy promotes on
    if low > 0.0:
        return B_BETTER_BELOW_MIN_EFFECT
    if high < 0.0:
        return A_BETTER
    return COLLECTING


# -- descriptive figures -----------------------------------------------------------------------------


def max_drawdown_r(r: Sequence[float] | np.ndarray) -> float:
    """Largest fall of the cumulative R series from an earlier peak (the start, 0, counts as a peak)."""
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(r, dtype=np.float64))])
    return float(np.max(np.maximum.accumulate(cum) - cum))


def brier_score(p: Sequence[float] | np.ndarray, y: Sequence[bool] | np.ndarray) -> float | None:
    """Mean squared error of probabilities against 0/1 outcomes; None without data."""
    pa, ya = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return _finite(np.mean((pa - ya) ** 2)) if pa.size else None


def average_precision(y: Sequence[bool] | np.ndarray, score: Sequence[float] | np.ndarray) -> float | None:
    """PR-AUC as sklearn's average_precision_score, sum of (R_n - R_n-1) P_n over thresholds; None if no positive."""
    ya, sa = np.asarray(y, dtype=np.float64), np.asarray(score, dtype=np.float64)
    if ya.size == 0 or not (ya > 0).any():
        return None
    order = np.argsort(-sa, kind="mergesort")
    ya, sa = ya[order], sa[order]
    last = np.r_[np.flatnonzero(np.diff(sa)), ya.size - 1]  # the last index of each distinct score
    tps = np.cumsum(ya)[last]
    precision = tps / (last + 1.0)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _stage1(p_reversal: list[Any], label_held: list[Any]) -> dict[str, Any]:
    """Brier score and PR-AUC of P(reversal) against the version's own realized Stage 1 label."""
    pairs = [
        (float(p), bool(y)) for p, y in zip(p_reversal, label_held, strict=True) if p is not None and y is not None
    ]
    p = np.array([q for q, _ in pairs], dtype=np.float64)
    y = np.array([t for _, t in pairs], dtype=np.float64)
    return {
        "n": len(pairs),
        "base_rate": _finite(y.mean()) if y.size else None,
        "brier": brier_score(p, y),
        "pr_auc": average_precision(y, p),
    }


def _hit_rates(a: list[Mapping[str, Any]], b: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Hit rate of each version on the bars where both signalled (descriptive, not a test)."""
    both = [
        (x, y) for x, y in zip(a, b, strict=True) if x.get("signal") in trade.SIDES and y.get("signal") in trade.SIDES
    ]
    n = len(both)
    hits_a = sum(x.get("result") == trade.HIT for x, _ in both)
    hits_b = sum(y.get("result") == trade.HIT for _, y in both)
    return {"both_signalled": n, "hit_rate_a": hits_a / n if n else None, "hit_rate_b": hits_b / n if n else None}


def _normal_p(z: float | None) -> float | None:
    """Two-sided p-value of a standard normal statistic."""
    return None if z is None else _finite(math.erfc(abs(z) / _SQRT2))


def _fixed_horizon(r_a: np.ndarray, r_b: np.ndarray, diff: np.ndarray, nw_se: float | None) -> dict[str, Any]:
    """Naive tests valid only at a sample size fixed in advance (Welch, paired t, Newey-West z; normal p)."""
    out: dict[str, Any] = {"welch_t": None, "welch_df": None, "welch_p": None, "paired_t": None, "paired_p": None}
    out |= {"nw_z": None, "nw_p": None}
    out["note"] = "fixed-horizon tests with normal-approximation p-values: read once at a size set in advance"
    n = diff.size
    if n < 2:
        return out
    mean_diff = float(diff.mean())
    va, vb = float(r_a.var(ddof=1)) / n, float(r_b.var(ddof=1)) / n
    if va + vb > 0:
        out["welch_t"] = _finite(mean_diff / math.sqrt(va + vb))
        out["welch_df"] = _finite((va + vb) ** 2 / ((va * va + vb * vb) / (n - 1)))
        out["welch_p"] = _normal_p(out["welch_t"])
    sd = float(diff.std(ddof=1))
    if sd > 0:
        out["paired_t"] = _finite(mean_diff / (sd / math.sqrt(n)))
        out["paired_p"] = _normal_p(out["paired_t"])
    if nw_se:
        out["nw_z"] = _finite(mean_diff / nw_se)
        out["nw_p"] = _normal_p(out["nw_z"])
    return out


def compare(
    rows: Sequence[Mapping[str, Any]],
    horizon: int = HORIZON,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    expected_bars: int = EXPECTED_BARS,
    min_blocks: int = MIN_BLOCKS,
    guardrail_breached: bool = False,
) -> dict[str, Any]:
    """JSON-ready paired comparison of a and b over EvaluationStore.paired() rows (one pair and timeframe)."""
    series = paired_rows(rows)
    n = int(series.diff.size)
    lag = default_lag(n, horizon)
    nw = _finite(newey_west_se(series.diff, lag)) if n >= 2 else None
    low, high, blocks = confidence_sequence(series.diff, horizon, alpha, expected_bars)
    a, b = [_side(rows[i], "a") for i in series.kept], [_side(rows[i], "b") for i in series.kept]
    return {
        "n_bars": n,
        "excluded": {
            "bars": sum(series.excluded.values()),
            **series.excluded,
            "min_atr_pips": MIN_ATR_PIPS,
            "max_abs_r": MAX_ABS_R,
        },
        "mean_r_a": _finite(series.r_a.mean()) if n else None,
        "mean_r_b": _finite(series.r_b.mean()) if n else None,
        "mean_diff": _finite(series.diff.mean()) if n else None,
        "nw_se": nw,
        "nw_lag": lag,
        "fixed_horizon": _fixed_horizon(series.r_a, series.r_b, series.diff, nw),
        "confidence_sequence": {
            "low": low,
            "high": high,
            "blocks": blocks,
            "block_bars": block_bars(horizon),
            "alpha": alpha,
            "expected_bars": expected_bars,
            "min_blocks": min_blocks,
        },
        "hit_rates": _hit_rates(a, b),
        "stage1": {
            "a": _stage1([s.get("p_reversal") for s in a], [s.get("label_held") for s in a]),
            "b": _stage1([s.get("p_reversal") for s in b], [s.get("label_held") for s in b]),
        },
        "max_drawdown_r": {"a": max_drawdown_r(series.r_a), "b": max_drawdown_r(series.r_b)},
        "min_effect": min_effect,
        "state": comparison_state(low, high, blocks, min_effect, guardrail_breached, min_blocks),
    }
