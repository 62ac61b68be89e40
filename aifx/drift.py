"""Input drift against training: quantile-bin references, PSI, and bounded rolling windows (numpy only).

A version's reference (written at import, `drift.json` beside Stage 1's scaler) holds, per feature and
for the Stage 1 probability, ~10 quantile bins of the training rows (the unscaled features of the bar
being predicted, i.e. the last row of each training window) and the share of training rows in each
bin. The service appends the same values of every served window (the last row of the rows sent to
Stage 1, and Stage 1's output) to a fixed-size window per (pair, timeframe, version), and computes
the population stability index (PSI) of each window against the reference off the request path:

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with both shares floored at EPSILON so an empty bin is finite. The usual rule of thumb (> 0.25: a shift
the model has not seen) assumes independent rows; served rows are consecutive bars of one series, whose
features are autocorrelated, so a window of the training period itself often reads far above it (issue 26:
the maximum over 17 columns of 500-row windows passes 0.25 in 22 % of them, in 76 % at 200 rows).

Alert thresholds are therefore calibrated (aifx/drift_calibration.py, at import) per column on contiguous windows of the
training rows of the sizes a serving window has (MIN_ROWS to WINDOW_ROWS rows), each against bins of the training
rows outside its fold (cross-fitted: a served window is new to the bins), so that a zero-drift window breaches
on any column in at most ALERT_RATE of windows, and stored with the reference. The
service compares each window's PSI with the threshold of its size (`Reference.limits`) and exports the largest
ratio (`DriftWindows.ratios`); a reference without thresholds (imported before them) falls back to one fixed
PSI for every column, with a warning at start. docs/statistics.md, "Input drift alerts", has the rule and its
check on held-out candles.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

STAGE1 = "stage1_probability"  # the reference name of the Stage 1 output (a `feature` label value)
BINS = 10
EPSILON = 1e-4  # floor of a bin's share (expected or actual): an empty bin adds a bounded term
WINDOW_ROWS = 500  # latest served rows kept per (pair, timeframe, version)
MIN_ROWS = 200  # rows a window needs before its PSI counts (with 10 bins, sampling noise ~ 9/rows)
MAX_WINDOWS = 128  # windows kept per worker (LRU): ~6.5 MB with 12 features (128 x 500 x 13 float64)
FORMAT = 1  # thresholds and stage1_source are optional keys: references written before them still load
ALERT_RATE = 0.01  # zero drift: share of windows that may breach on any column
CALIBRATION_SIZES = (MIN_ROWS, 300, 400, WINDOW_ROWS)  # window sizes (rows) thresholds are calibrated at
FALLBACK_PSI = 0.25  # the threshold of every column of a reference without calibrated ones (AIFX_DRIFT_FALLBACK_PSI)


class DriftReferenceError(ValueError):
    """A stored reference is not usable (malformed, or not for the version's features)."""


@dataclass(frozen=True)
class Bins:
    """Quantile bins of one training column: inner edges (ascending, unique) and each bin's share.

    Bin i holds values v with edges[i-1] < v <= edges[i] (bin 0 is everything <= edges[0], the last
    bin everything above edges[-1]); a column with ties simply has fewer edges.
    """

    edges: np.ndarray
    expected: np.ndarray

    def index(self, values: np.ndarray) -> np.ndarray:
        """The bin of each value."""
        return np.searchsorted(self.edges, values, side="left")

    def shares(self, values: np.ndarray) -> np.ndarray:
        """Share of values in each bin (sums to 1; zeros for no values)."""
        values = np.asarray(values, dtype=np.float64)
        counts = np.bincount(self.index(values), minlength=len(self.edges) + 1).astype(np.float64)
        return counts / max(len(values), 1)

    def psi(self, values: np.ndarray) -> float:
        """PSI of these values against the training shares."""
        return psi(self.expected, self.shares(values))

    def to_json(self) -> dict[str, list[float]]:
        return {"edges": self.edges.tolist(), "expected": self.expected.tolist()}

    @classmethod
    def from_json(cls, data: Any) -> Bins:
        if not isinstance(data, Mapping):
            raise DriftReferenceError(f"bins must be an object with edges and expected, got {type(data).__name__}")
        edges = np.asarray(data.get("edges"), dtype=np.float64).reshape(-1)
        expected = np.asarray(data.get("expected"), dtype=np.float64).reshape(-1)
        if len(expected) != len(edges) + 1:
            raise DriftReferenceError(f"{len(edges)} edges need {len(edges) + 1} shares, got {len(expected)}")
        if not (np.isfinite(edges).all() and np.isfinite(expected).all()) or (np.diff(edges) <= 0).any():
            raise DriftReferenceError("edges must be finite and strictly ascending, shares finite")
        if (expected < 0).any() or not math.isclose(float(expected.sum()), 1.0, abs_tol=1e-6):
            raise DriftReferenceError(f"shares must be non-negative and sum to 1, got {float(expected.sum())}")
        return cls(edges, expected)


def quantile_bins(values: np.ndarray, bins: int = BINS) -> Bins:
    """~`bins` equal-frequency bins of a training column (fewer where values tie), and their shares."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("no finite values to bin")
    edges = np.unique(np.quantile(values, np.arange(1, bins) / bins))
    edges = edges[edges < values.max()]  # an edge at the maximum would leave the last bin empty
    out = Bins(edges, np.zeros(len(edges) + 1))
    return Bins(edges, out.shares(values))


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (0 for equal shares)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), eps)
    a = np.maximum(np.asarray(actual, dtype=np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class AlertThresholds:
    """Calibrated alert thresholds of one reference: per column, the PSI a window of each size may reach.

    `values[name][k]` is calibrated on windows of `sizes[k]` rows and used for windows of `sizes[k]` rows up to
    the next size (a larger window's zero-drift PSI is smaller, so this errs on the quiet side); `rate` is the share
    of zero-drift windows the calibration allows to breach on any column.
    """

    sizes: tuple[int, ...]
    values: dict[str, tuple[float, ...]]
    rate: float
    method: str = ""  # how they were calibrated, in words (aifx/drift_calibration.py METHOD)

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "sizes": list(self.sizes), "method": self.method,
                "values": {name: list(v) for name, v in self.values.items()}}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any, names: Sequence[str]) -> AlertThresholds:
        if not isinstance(data, Mapping) or not isinstance(data.get("values"), Mapping):
            raise DriftReferenceError("thresholds must be an object with sizes, values and rate")
        try:
            sizes = tuple(int(n) for n in data["sizes"])
            rate = float(data["rate"])
            values = {name: tuple(float(x) for x in data["values"][name]) for name in names}
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftReferenceError(f"thresholds: {exc!r}") from None
        if not sizes or any(n < 1 for n in sizes) or list(sizes) != sorted(set(sizes)) or not 0 < rate < 1:
            raise DriftReferenceError("thresholds: sizes must be ascending positive row counts, rate in (0, 1)")
        for name, v in values.items():
            if len(v) != len(sizes) or not all(math.isfinite(x) and x > 0 for x in v):
                raise DriftReferenceError(f"thresholds of {name}: one finite positive value per size")
        method = data.get("method", "")
        return cls(sizes, values, rate, method if isinstance(method, str) else "")


@dataclass(frozen=True)
class Reference:
    """A version's training reference: bins per feature (in the version's order) and for Stage 1, and the
    calibrated alert thresholds (None: a reference written before them, whose alerts use one fixed PSI)."""

    features: tuple[str, ...]
    bins: dict[str, Bins]  # every feature and STAGE1
    rows: int
    thresholds: AlertThresholds | None = None
    stage1_source: str = ""  # where the Stage 1 probabilities binned came from (out-of-sample or not)

    @property
    def names(self) -> tuple[str, ...]:
        """The columns of a window row: the features in order, then the Stage 1 probability."""
        return (*self.features, STAGE1)

    @cached_property
    def _table(self) -> tuple[np.ndarray, np.ndarray]:
        """Every column's edges (padded with +inf) and shares (padded with 0) as two matrices."""
        bins = [self.bins[name] for name in self.names]
        width = max(len(b.edges) for b in bins)
        edges = np.full((len(bins), width), np.inf)
        expected = np.zeros((len(bins), width + 1))
        for j, b in enumerate(bins):
            edges[j, : len(b.edges)] = b.edges
            expected[j, : len(b.expected)] = b.expected
        return edges, expected

    def psi(self, rows: np.ndarray) -> np.ndarray:
        """PSI of each column of (n, features + 1) window rows (`names` order), all columns in a few numpy
        calls: the same values as each column's `Bins.psi` (a padded bin is empty on both sides: adds 0)."""
        edges, expected = self._table
        cols, width = expected.shape
        index = np.zeros(rows.shape, dtype=np.intp)  # per column: searchsorted(edges, value, side="left")
        for k in range(width - 1):  # edge ranks (~9): faster than one (n, cols, edges) comparison's sum
            index += rows > edges[:, k]
        counts = np.bincount((index + np.arange(cols) * width).ravel(), minlength=cols * width)
        actual = np.maximum(counts.reshape(cols, width) / max(len(rows), 1), EPSILON)
        e = np.maximum(expected, EPSILON)
        return np.sum((actual - e) * np.log(actual / e), axis=1)

    @cached_property
    def _limits(self) -> np.ndarray | None:
        """The thresholds as a (sizes, columns) matrix in `names` order (None without thresholds)."""
        if self.thresholds is None:
            return None
        return np.array([self.thresholds.values[name] for name in self.names], dtype=np.float64).T

    def limits(self, rows: int, fallback: float = FALLBACK_PSI) -> np.ndarray | None:
        """Each column's alert threshold for a window of `rows` rows: the calibrated one of the largest size not
        above `rows` (None for a window smaller than every calibrated size); `fallback` for every column of a
        reference without thresholds."""
        if self._limits is None or self.thresholds is None:
            return np.full(len(self.names), float(fallback))
        k = bisect.bisect_right(self.thresholds.sizes, rows) - 1
        return None if k < 0 else self._limits[k]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "rows": self.rows,
            "features": list(self.features),
            "bins": {name: self.bins[name].to_json() for name in self.names},
        }
        if self.stage1_source:
            out["stage1_source"] = self.stage1_source
        if self.thresholds is not None:
            out["thresholds"] = self.thresholds.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any) -> Reference:
        """Parse a stored reference (DriftReferenceError says what is wrong)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise DriftReferenceError(f"not a drift reference of format {FORMAT}")
        features = data.get("features")
        bins = data.get("bins")
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features) or STAGE1 in features:
            raise DriftReferenceError("features must be a list of feature names")
        if not isinstance(bins, Mapping):
            raise DriftReferenceError("bins must map each feature and stage1_probability to its bins")
        parsed = {}
        for name in (*features, STAGE1):
            if name not in bins:
                raise DriftReferenceError(f"no bins for {name}")
            try:
                parsed[name] = Bins.from_json(bins[name])
            except (TypeError, ValueError) as exc:
                raise DriftReferenceError(f"bins of {name}: {exc}") from None
        names = (*features, STAGE1)
        raw = data.get("thresholds")
        thresholds = None if raw is None else AlertThresholds.from_json(raw, names)
        source = data.get("stage1_source", "")
        return cls(
            tuple(features), parsed, int(data.get("rows", 0)), thresholds, source if isinstance(source, str) else ""
        )


def build_reference(
    features: Sequence[str], rows: np.ndarray, stage1: np.ndarray, bins: int = BINS, stage1_source: str = ""
) -> Reference:
    """The reference of a version from its training rows (n, features), unscaled, and Stage 1's outputs (n,).

    Stage 1's outputs should be out-of-sample (a network's outputs on its own training rows are more confident
    than on new bars); NaN marks a row without one (e.g. before the first walk-forward test fold), which the
    Stage 1 bins leave out. `stage1_source` says where they came from."""
    rows = np.asarray(rows, dtype=np.float64)
    stage1 = np.asarray(stage1, dtype=np.float64).reshape(-1)
    if rows.ndim != 2 or rows.shape[1] != len(features) or len(stage1) != len(rows):
        raise ValueError(f"rows {rows.shape} and stage1 {stage1.shape} do not fit {len(features)} features")
    out = {name: quantile_bins(rows[:, j], bins) for j, name in enumerate(features)}
    out[STAGE1] = quantile_bins(stage1, bins)
    return Reference(tuple(features), out, len(rows), None, stage1_source)


class Window:
    """The latest `capacity` rows of one (pair, timeframe, version): a fixed ring buffer."""

    __slots__ = ("version", "_data", "_next", "_count", "_last", "dirty", "psi", "ratio")

    def __init__(self, version: str, columns: int, capacity: int) -> None:
        self.version = version
        self._data = np.empty((capacity, columns), dtype=np.float64)
        self._next = 0
        self._count = 0
        self._last = b""  # the previous row's feature bytes (comparing bytes is ~10x faster than array_equal)
        self.dirty = True
        self.psi: np.ndarray | None = None  # per column, cached until the next append
        self.ratio: np.ndarray | None = None  # psi / the column's alert threshold at this window's size

    def __len__(self) -> int:
        return self._count

    def append(self, features: np.ndarray, stage1: float) -> bool:
        """Append a row; False (nothing appended) when it repeats the previous row's features: the same
        bar predicted again (a client polling its latest bar) counts once, not once per call."""
        key = features.tobytes()
        if key == self._last:
            return False
        self._last = key
        self._data[self._next, :-1] = features
        self._data[self._next, -1] = stage1
        self._next = (self._next + 1) % len(self._data)
        self._count = min(self._count + 1, len(self._data))
        self.dirty = True
        return True

    def values(self) -> np.ndarray:
        """The rows held (in no particular order: PSI does not care)."""
        return self._data[: self._count]


@dataclass
class DriftWindows:
    """Rolling windows per (pair, timeframe, version) and their PSI against each version's reference.

    `add` is the request path: one row copy into a ring buffer (bounded memory: at most `max_windows`
    windows of `capacity` rows, the least recently used dropped). `psi` runs off the request path and
    recomputes only the windows that changed since its last call, with each window's ratio to its alert
    thresholds (`Reference.limits` at the window's row count; `fallback_psi` for references without them).
    """

    references: Mapping[str, Reference]
    capacity: int = WINDOW_ROWS
    min_rows: int = MIN_ROWS
    max_windows: int = MAX_WINDOWS
    fallback_psi: float = FALLBACK_PSI
    _windows: OrderedDict[tuple[str, str, str], Window] = field(default_factory=OrderedDict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _ratios: dict[str, dict[str, float]] = field(default_factory=dict, init=False)

    def add(self, pair: str, timeframe: str, version: str, features: np.ndarray, stage1: float) -> None:
        """Append a served window's last feature row and its Stage 1 probability (ignored without a reference;
        a repeat of the window's previous row is not appended)."""
        ref = self.references.get(version)
        if ref is None or len(features) != len(ref.features):
            return
        key = (pair, timeframe, version)
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = Window(version, len(ref.features) + 1, self.capacity)
                while len(self._windows) > self.max_windows:
                    self._windows.popitem(last=False)
            else:
                self._windows.move_to_end(key)
            window.append(features, stage1)

    def __len__(self) -> int:
        return len(self._windows)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()

    def threshold(self, version: str) -> dict[str, float]:
        """A version's alert threshold per column for a full window (`capacity` rows): what the gauge
        aifx_feature_drift_psi_threshold shows ({} without a reference)."""
        ref = self.references.get(version)
        limits = None if ref is None else ref.limits(self.capacity, self.fallback_psi)
        return {} if ref is None or limits is None else dict(zip(ref.names, limits.tolist(), strict=True))

    def psi(self) -> dict[str, dict[str, float]]:
        """Per version with a reference: {feature or stage1_probability: PSI}, the maximum over the version's
        windows holding at least `min_rows` rows (a version without such a window maps to {}). Also computes
        each window's ratio to its thresholds, read with `ratios()`."""
        with self._lock:
            todo = [(w, w.values().copy()) for w in self._windows.values() if w.dirty and len(w) >= self.min_rows]
            for w, _ in todo:
                w.dirty = False
            ready = [w for w in self._windows.values() if len(w) >= self.min_rows]
        for w, values in todo:
            ref = self.references[w.version]
            w.psi = ref.psi(values)
            limits = ref.limits(len(values), self.fallback_psi)
            w.ratio = None if limits is None else w.psi / limits
        out = {v: self._worst(ready, v, "psi") for v in self.references}
        self._ratios = {v: self._worst(ready, v, "ratio") for v in self.references}
        return out

    def _worst(self, windows: list[Window], version: str, attr: str) -> dict[str, float]:
        """{name: the largest value over the version's windows} of their cached `psi` or `ratio` ({}: none)."""
        arrays = [a for w in windows if w.version == version and (a := getattr(w, attr)) is not None]
        if not arrays:
            return {}
        return dict(zip(self.references[version].names, np.max(arrays, axis=0).tolist(), strict=True))

    def ratios(self) -> dict[str, dict[str, float]]:
        """Per version, at the last `psi()` call: {name: the largest PSI / alert threshold over its windows}
        (above 1: a window breaches; {} while no window is large enough to be judged)."""
        return self._ratios
