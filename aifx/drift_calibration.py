"""Alert thresholds of input drift calibrated on the training rows (issue 26): see `calibrate`.

Runs at training and import (training/train.py, model_store_import, test fixtures), never while serving:
it imports scipy. The serving side (aifx/drift.py) only reads the thresholds stored in drift.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from aifx.drift import ALERT_RATE, CALIBRATION_SIZES, EPSILON, AlertThresholds, Bins, Reference

MIN_DISJOINT_WINDOWS = 3  # a size is calibrated only where the training rows hold this many disjoint windows
MAX_CALIBRATION_WINDOWS = 5000  # windows per column and size (a stride beyond): the PSI of each is ~10 numbers
PSI_FLOOR = 1e-9  # log of a window's PSI: a window identical to the reference reads 0
METHOD = (
    "per column and window size: contiguous windows of the time-ordered training rows; normal prediction bound "
    "of log PSI, exp(mean + t(1 - rate/columns, m - 1) sd sqrt(1 + 1/m)), m = disjoint windows the rows hold, "
    "at least the largest PSI seen and chi2(1 - rate/columns, bins - 1) / rows; a window between two sizes "
    "takes the smaller size's threshold"
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


def calibrate(
    reference: Reference,
    rows: np.ndarray,
    sizes: Sequence[int] = CALIBRATION_SIZES,
    rate: float = ALERT_RATE,
    max_windows: int = MAX_CALIBRATION_WINDOWS,
) -> Reference:
    """The reference with alert thresholds calibrated on its training rows (`rows`: (n, columns) in `names`
    order, the features then the Stage 1 probability, time-ordered as served; NaN: no value).

    Per column and window size n, every contiguous n-row window of the column's finite stretches gives a PSI
    (the zero-drift distribution of a served window: consecutive bars, autocorrelated features). Its threshold
    is the normal prediction bound of a new window's log PSI, exp(mean + t sd sqrt(1 + 1/m)), with t the
    1 - rate/columns quantile of Student's t with m - 1 degrees of freedom and m the number of disjoint
    n-row windows the rows hold (overlapping windows add little information), and never below the largest PSI
    seen nor the PSI that n independent rows drawn from the reference reach at the same level (chi-square with
    bins - 1 degrees of freedom over n: a column whose contiguous windows all match the reference closely, such
    as the hour of day, is not held to less than sampling noise). Bonferroni over the columns: a zero-drift
    window breaches on any column in at most `rate` of windows when log PSI is about normal. No size borrows
    a smaller size's lower threshold: the part of PSI that comes from regimes longer than the window does not
    shrink as the window grows. Sizes for which the rows do not hold MIN_DISJOINT_WINDOWS disjoint windows of
    every column are left out; the reference comes back unchanged when none is left. Runs at training and
    import, never while serving.
    """
    from scipy import stats  # imported here: importing this module stays cheap

    rows = np.asarray(rows, dtype=np.float64)
    names = reference.names
    if rows.ndim != 2 or rows.shape[1] != len(names):
        raise ValueError(f"rows {rows.shape} do not fit the reference's {len(names)} columns")
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}")
    runs = {name: _runs(rows[:, j]) for j, name in enumerate(names)}
    kept: list[int] = []
    table: list[list[float]] = []
    for size in sorted(set(int(n) for n in sizes)):
        per_column = []
        for name in names:
            long_runs = [r for r in runs[name] if len(r) >= size]
            m = sum(len(r) for r in long_runs) / size
            if m < MIN_DISJOINT_WINDOWS:
                break
            positions = sum(len(r) - size + 1 for r in long_runs)
            stride = max(1, math.ceil(positions / max_windows))
            seen = np.concatenate([window_psi(reference.bins[name], r, size, stride) for r in long_runs])
            logs = np.log(np.maximum(seen, PSI_FLOOR))
            level = 1.0 - rate / len(names)
            t = float(stats.t.ppf(level, m - 1.0)) * math.sqrt(1.0 + 1.0 / m)
            bound = math.exp(float(logs.mean()) + t * float(logs.std(ddof=1)))
            # Independent rows drawn from the reference itself: PSI ~ chi-square(bins - 1) / rows.
            bins = len(reference.bins[name].expected)
            noise = float(stats.chi2.ppf(level, bins - 1)) / size if bins > 1 else 0.0
            per_column.append(max(bound, float(seen.max()), noise))
        else:
            kept.append(size)
            table.append(per_column)
    if not kept:
        return reference
    values = {name: tuple(row[j] for row in table) for j, name in enumerate(names)}
    return replace(reference, thresholds=AlertThresholds(tuple(kept), values, rate, METHOD))
