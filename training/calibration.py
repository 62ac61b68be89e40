"""Fitting calibration maps (aifx/calibration.py) and measuring calibration: Brier, ECE, reliability bins.

Platt and isotonic are compared by cross-fitting inside the calibration block (each half calibrated by the
map fitted on the other half), so the choice never rests on a map scored on the rows it was fitted on:
isotonic would win that comparison by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from aifx.calibration import EPS, IDENTITY, IDENTITY_MAP, ISOTONIC, PLATT, Calibration

FITTED = (PLATT, ISOTONIC)
MIN_ROWS = 20  # fewer calibration rows (or one class only): identity
BINS = 10


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of probabilities against 0/1 outcomes."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - y) ** 2)) if len(y) else float("nan")


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((np.asarray(p) * bins).astype(int), bins - 1)


def ece(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over equal-width bins: sum of |outcome rate - mean probability| x bin share."""
    if not len(y):
        return float("nan")
    idx = _bin_index(p, bins)
    total = 0.0
    for b in np.unique(idx):
        sel = idx == b
        total += sel.mean() * abs(float(y[sel].mean()) - float(np.mean(p[sel])))
    return total


def reliability(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> dict[str, list[float | int | None]]:
    """Reliability diagram data per equal-width bin: count, mean probability, outcome rate (None when empty)."""
    idx = _bin_index(p, bins)
    count: list[float | int | None] = []
    mean_p: list[float | int | None] = []
    rate: list[float | int | None] = []
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        count.append(n)
        mean_p.append(round(float(np.mean(p[sel])), 6) if n else None)
        rate.append(round(float(y[sel].mean()), 6) if n else None)
    return {"count": count, "mean_prob": mean_p, "outcome_rate": rate}


def summary(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Brier score and ECE, rounded for the metadata."""
    return {"brier": round(brier(y, p), 6), "ece": round(ece(y, p), 6)}


def _fittable(y: np.ndarray) -> bool:
    return len(y) >= MIN_ROWS and 0 < float(y.mean()) < 1


def fit_platt(p: np.ndarray, y: np.ndarray) -> Calibration:
    """Logistic regression of the outcome on logit(p); identity when it cannot be fitted or is not increasing."""
    if not _fittable(y):
        return IDENTITY_MAP
    q = np.clip(p, EPS, 1 - EPS)
    z = np.log(q / (1 - q)).reshape(-1, 1)
    clf = LogisticRegression(C=1e4, max_iter=1000).fit(z, y.astype(int))
    a, b = float(clf.coef_[0, 0]), float(clf.intercept_[0])
    if not (np.isfinite(a) and np.isfinite(b)) or a <= 0:
        return IDENTITY_MAP  # a falling map would reverse the network's ranking: not a calibration
    return Calibration(PLATT, a=a, b=b)


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> Calibration:
    """Isotonic regression, stored as its levels at the mean raw probability of each level's rows.

    Joining level centroids (not sklearn's block edges) keeps the map's slopes moderate: edges of adjacent
    blocks can be 1e-6 apart, which would turn float32 noise between LiteRT and Keras into visible jumps.
    """
    if not _fittable(y):
        return IDENTITY_MAP
    p = np.asarray(p, dtype=np.float64)
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y).predict(p)
    levels = np.unique(fitted)
    x = np.array([p[fitted == v].mean() for v in levels])
    if len(levels) == 1:
        return Calibration(ISOTONIC, x=(0.0, 1.0), y=(float(levels[0]),) * 2)
    order = np.argsort(x)  # increasing already (levels are monotone in p); sorted for float ties' sake
    x, y_knots = x[order], np.maximum.accumulate(levels[order])
    keep = np.concatenate([[True], np.diff(x) > 0])
    return Calibration(ISOTONIC, x=tuple(map(float, x[keep])), y=tuple(map(float, np.clip(y_knots[keep], 0, 1))))


def fit_map(method: str, p: np.ndarray, y: np.ndarray) -> Calibration:
    """The map of one method fitted on (p, y)."""
    if method == PLATT:
        return fit_platt(p, y)
    if method == ISOTONIC:
        return fit_isotonic(p, y)
    return IDENTITY_MAP


def crossfit(method: str, p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Out-of-half calibrated probabilities: each time-ordered half mapped by the method fitted on the other."""
    if method == IDENTITY:
        return np.asarray(p, dtype=np.float64)
    half = len(p) // 2
    first, second = slice(0, half), slice(half, len(p))
    return np.concatenate(
        [fit_map(method, p[second], y[second])(p[first]), fit_map(method, p[first], y[first])(p[second])]
    )


@dataclass(frozen=True)
class Choice:
    """The method chosen on one calibration block, its map (fitted on the whole block) and what decided it."""

    method: str
    calibration: Calibration
    brier: dict[str, float]  # cross-fitted Brier per method, identity = the raw probabilities
    crossfit: dict[str, np.ndarray]  # cross-fitted probabilities per method


def choose(p: np.ndarray, y: np.ndarray) -> Choice:
    """The method with the lowest cross-fitted Brier score on the block; identity unless one lowers it."""
    probs = {m: crossfit(m, p, y) for m in (IDENTITY, *FITTED)}
    scores = {m: brier(y, v) for m, v in probs.items()}
    best = min(FITTED, key=lambda m: scores[m])
    method = best if scores[best] < scores[IDENTITY] else IDENTITY
    return Choice(method, fit_map(method, p, y), scores, probs)


def best_pooled(y: np.ndarray, probs: dict[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The method with the lowest Brier score over pooled blocks (identity unless one lowers it), and the scores."""
    scores = {m: brier(y, v) for m, v in probs.items()}
    best = min(FITTED, key=lambda m: scores[m])
    return (best if scores[best] < scores[IDENTITY] else IDENTITY), scores


def mcc_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """The Stage 1 threshold (grid step 0.005) with the highest Matthews correlation on (y, p), and that MCC.

    Objective: Matthews correlation, because it is 0 for any constant or random signal at every base rate,
    so it never buys its score by always firing (at v3.1's base rate 0.48 firing on every bar has F1 0.65)
    and it moves the threshold with the base rate (v3.0's 0.12). Ties go to the higher threshold (fewer trades).
    """
    grid = np.round(np.arange(0.005, 1.0, 0.005), 3)
    y = y.astype(bool)
    fire = p[None, :] >= grid[:, None]
    tp = (fire & y).sum(axis=1).astype(float)
    fp = (fire & ~y).sum(axis=1).astype(float)
    fn = (~fire & y).sum(axis=1).astype(float)
    tn = (~fire & ~y).sum(axis=1).astype(float)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0)
    i = len(grid) - 1 - int(np.argmax(mcc[::-1]))
    return float(grid[i]), round(float(mcc[i]), 6)
