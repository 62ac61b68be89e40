"""Alert thresholds of input drift calibrated on the training rows (issue 26): see `calibrate`.

Runs at training and import (training/train.py, model_store_import, test fixtures), never while serving:
it imports scipy. The serving side (aifx/drift.py) only reads the thresholds stored in drift.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from aifx.drift import ALERT_RATE, BINS, CALIBRATION_SIZES, EPSILON, AlertThresholds, Bins, Reference, quantile_bins

MIN_DISJOINT_WINDOWS = 3  # a size is calibrated only where the training rows hold this many disjoint windows
MAX_CALIBRATION_WINDOWS = 5000  # windows per column and size (a stride beyond): the PSI of each is ~10 numbers
FOLDS = 5  # contiguous folds of the training rows: each window is scored against bins of the other folds
PSI_FLOOR = 1e-9  # log of a window's PSI: a window identical to the reference reads 0
METHOD = (  # stored with the thresholds (format: folds)
    "per column and window size: the time-ordered training rows cut into {folds} contiguous folds (fewer, at least 2, "
    "where a fold would hold fewer than 2 disjoint windows); each fold's contiguous windows scored against quantile "
    "bins of the other folds' rows (out of fold); normal prediction bound of their log PSI, "
    "exp(mean + t(1 - rate/columns, m - 1) sd sqrt(1 + 1/m)), m = disjoint windows the folds hold, at least the "
    "largest out-of-fold PSI seen and chi2(1 - rate/columns, bins - 1) / rows; a window between two sizes takes "
    "the smaller size's threshold"
)


def window_psi(bins: Bins, values: np.ndarray, size: int, stride: int = 1) -> np.ndarray:
    """PSI against `bins` of every contiguous window of `size` values of a time-ordered column (windows starting
    at 0, stride, 2 stride, ...): the values of `bins.psi(values[s : s + size])`, from running bin counts."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) < size:
        return np.empty(0)
    width = len(bins.expected)
    onehot = np.zeros((len(values) + 1, width))
    onehot[np.arange(1, len(values) + 1), bins.index(values)] = 1.0
    running = np.cumsum(onehot, axis=0)  # whole counts: exact in float64
    starts = np.arange(0, len(values) - size + 1, stride)
    actual = np.maximum((running[starts + size] - running[starts]) / size, EPSILON)
    e = np.maximum(bins.expected, EPSILON)
    return np.sum((actual - e) * np.log(actual / e), axis=1)


def _runs(values: np.ndarray) -> list[np.ndarray]:
    """The contiguous stretches of finite values of a column (a NaN row, e.g. no out-of-sample Stage 1, cuts)."""
    finite = np.isfinite(values)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], finite.astype(np.int8), [0]])))
    return [values[a:b] for a, b in zip(edges[::2], edges[1::2], strict=True)]


def fold_spans(values: np.ndarray, folds: int) -> list[tuple[int, int]]:
    """`folds` contiguous [start, stop) row ranges of a time-ordered column, each with about the same number of
    finite values (NaN rows, e.g. before the first out-of-sample Stage 1, count for no fold)."""
    finite = np.flatnonzero(np.isfinite(values))
    return [(int(c[0]), int(c[-1]) + 1) for c in np.array_split(finite, folds) if len(c)]


def out_of_fold_psi(
    values: np.ndarray, size: int, folds: int, bins: int = BINS, max_windows: int = MAX_CALIBRATION_WINDOWS
) -> tuple[np.ndarray, float]:
    """The PSI of every contiguous `size`-row window of each fold of a time-ordered column against
    `quantile_bins` of the rows outside that fold (a window never scored against bins built with its own rows
    or its neighbours), and m, the number of disjoint windows the folds' finite stretches hold."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    spans = fold_spans(values, folds)
    runs = [[r for r in _runs(values[a:b]) if len(r) >= size] for a, b in spans]
    m = sum(len(r) for fold in runs for r in fold) / size
    positions = sum(len(r) - size + 1 for fold in runs for r in fold)
    stride = max(1, math.ceil(positions / max_windows))
    seen = [np.empty(0)]
    for (a, b), fold in zip(spans, runs, strict=True):
        if fold:
            # One fold: bins of every value, the window's own included (the in-sample rule, for comparison).
            pool = values if len(spans) == 1 else np.concatenate([values[:a], values[b:]])
            outside = quantile_bins(pool, bins)
            seen += [window_psi(outside, r, size, stride) for r in fold]
    return np.concatenate(seen), m


def calibrate(
    reference: Reference,
    rows: np.ndarray,
    sizes: Sequence[int] = CALIBRATION_SIZES,
    rate: float = ALERT_RATE,
    max_windows: int = MAX_CALIBRATION_WINDOWS,
    bins: int = BINS,
    folds: int = FOLDS,
) -> Reference:
    """The reference with alert thresholds calibrated on its training rows (`rows`: (n, columns) in `names`
    order, the features then the Stage 1 probability, time-ordered as served; NaN: no value; `bins`: the bin
    count the reference was built with).

    Cross-fitted: a served window is new, out of the rows its reference's bins were built from, and autocorrelated
    features make a window of the training rows read a lower PSI against bins that hold it and its neighbours
    (a regime present only in that stretch widens the bins to fit it). So per column the time-ordered finite
    values are cut into `folds` contiguous folds of about equal size (fewer, at least 2, where a fold would hold
    fewer than 2 disjoint n-row windows), and every contiguous n-row window inside a fold gives a PSI against
    `quantile_bins` of the other folds' values (`out_of_fold_psi`; `folds=1`: all values, the in-sample rule).
    The threshold for size n is the normal prediction bound of a new window's log PSI, exp(mean + t sd
    sqrt(1 + 1/m)), with t the 1 - rate/columns quantile of Student's t with m - 1 degrees of freedom and m the
    number of disjoint n-row windows the folds hold (overlapping windows add little information), and never
    below the largest out-of-fold PSI seen nor the PSI that n independent rows drawn from the reference reach at
    the same level (chi-square with bins - 1 degrees of freedom over n: a column whose windows all match the
    reference closely, such as the hour of day, is not held to less than sampling noise).

    Guarantee (approximate): if a new window's log PSI against the reference is distributed as a fold window's
    out-of-fold log PSI, about normal, then by Bonferroni over the columns a zero-drift window breaches on any
    column in at most `rate` of windows. A regime the training rows never hold is drift by this definition.
    No size borrows a smaller size's lower threshold: the part of PSI that comes from regimes longer than the
    window does not shrink as the window grows. Sizes for which the folds do not hold MIN_DISJOINT_WINDOWS
    disjoint windows of every column are left out; the reference comes back unchanged when none is left. Runs
    at training and import, never while serving.
    """
    from scipy import stats  # imported here: importing this module stays cheap

    rows = np.asarray(rows, dtype=np.float64)
    names = reference.names
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise ValueError(f"rows {rows.shape} do not fit the reference's {len(names)} columns")
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds!r}")
    finite = np.isfinite(rows).sum(axis=0)
    level = 1.0 - rate / len(names)
    kept: list[int] = []
    table: list[list[float]] = []
    for size in sorted(set(int(n) for n in sizes)):
        per_column = []
        for j, name in enumerate(names):
            # Fewer folds (at least 2; folds=1 stays in-sample) where a fold would hold < 2 disjoint windows.
            k = min(folds, max(2, int(finite[j]) // (2 * size)))
            seen, m = out_of_fold_psi(rows[:, j], size, k, bins, max_windows)
            if m < MIN_DISJOINT_WINDOWS:
                break
            logs = np.log(np.maximum(seen, PSI_FLOOR))
            t = float(stats.t.ppf(level, m - 1.0)) * math.sqrt(1.0 + 1.0 / m)
            bound = math.exp(float(logs.mean()) + t * float(logs.std(ddof=1)))
            # Independent rows drawn from the reference itself: PSI ~ chi-square(bins - 1) / rows.
            width = len(reference.bins[name].expected)
            noise = float(stats.chi2.ppf(level, width - 1)) / size if width > 1 else 0.0
            per_column.append(max(bound, float(seen.max()), noise))
        else:
            kept.append(size)
            table.append(per_column)
    if not kept:
        return reference
    values = {name: tuple(row[j] for row in table) for j, name in enumerate(names)}
    return replace(reference, thresholds=AlertThresholds(tuple(kept), values, rate, METHOD.format(folds=folds)))
