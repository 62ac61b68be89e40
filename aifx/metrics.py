"""Custom Prometheus metrics (prefix aifx_), exported through BentoML's own /metrics.

`bentoml serve` sets PROMETHEUS_MULTIPROC_DIR for every worker before our code is
imported, so prometheus_client writes to the shared multiprocess files that BentoML's
/metrics collects; nothing else is needed. Label values are bounded: versions come
from the configured set (anything else is "unknown"), reasons and stages from fixed lists.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from aifx import instruments
from aifx.promotion import state_gauge

UNKNOWN = "unknown"
ERROR_REASONS = (
    "validation",
    "bad_candles",
    "unknown_version",
    "version_unavailable",
    "stage_unavailable",
    "body_too_large",
    "body_too_slow",
    "unauthorized",
    "not_found",
    "conflict",
    "database_unavailable",
    "rate_limited",
    "internal",
)
STAGES = ("stage1", "stage2")
PROB_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (1.0,)

PREDICTIONS = Counter("aifx_predictions", "Predictions served, by model version and signal", ["version", "signal"])
# Signal streams per pair and timeframe (labels: instrument-table pairs; timeframes of
# instruments.METRIC_TIMEFRAMES, any other "other"), for the stalled-candles alert (AIFXSignalsStalled).
SIGNAL_SERIES = ["pair", "timeframe"]
SIGNAL_SUBSCRIBERS = Gauge(
    "aifx_signal_subscribers", "Open signal streams (GET /reversal/signals/stream)", SIGNAL_SERIES,
    multiprocess_mode="livesum",
)  # fmt: skip
SIGNAL_EVENTS = Counter(
    "aifx_signal_events_published", "Signal events published (one per bar trusted candles close)", SIGNAL_SERIES
)
SIGNAL_DUE = Gauge(
    "aifx_signal_due_timestamp_seconds",
    "When the bar after the newest signal event is overdue (Unix time): its close plus 15 minutes, after the "
    "weekend it spans; every worker follows every event",
    SIGNAL_SERIES,
    multiprocess_mode="max",
)
SIGNAL_PUBLISH_LATENCY = Histogram(
    "aifx_signal_publish_latency_seconds",
    "From a signal event's commit to its hand-over to a subscriber of this worker",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
COMPARES = Counter("aifx_compares", "Compare requests answered (their answers are not served predictions)")
STAGE1_PROBABILITY = Histogram(
    "aifx_stage1_probability", "Stage 1 P(reversal) of served predictions", ["version"], buckets=PROB_BUCKETS
)
CONFIDENCE = Histogram("aifx_confidence", "Confidence of served predictions", ["version"], buckets=PROB_BUCKETS)
ERRORS = Counter("aifx_errors", "Requests answered with an error, by reason", ["reason"])
ACTIVE_VERSION = Gauge(
    "aifx_active_version",
    "1 for the model version that serves requests without an explicit version, 0 for the others",
    ["version"],
    multiprocess_mode="livemostrecent",
)
VERSION_LOADED = Gauge(
    "aifx_version_loaded",
    "1 if every stage of a configured version is loaded, else 0",
    ["version"],
    multiprocess_mode="livemostrecent",
)
TRAINING_BASE_RATE = Gauge(
    "aifx_training_base_rate",
    "Stage 1 positive base rate of the version's training data (model metadata), set at start-up",
    ["version"],
    multiprocess_mode="livemostrecent",
)
# Served predictions whose pair or timeframe the version was not trained on (aifx/domain.py); versions
# without a recorded domain are never counted. Labels: configured versions.
OUT_OF_DOMAIN = Counter(
    "aifx_out_of_domain",
    "Served predictions whose pair or timeframe is outside the version's training domain",
    ["version"],
)
STAGE_FAILURES = Counter("aifx_stage_call_failures", "Stage model calls that raised (a model fault: 503)", ["stage"])

# The outcome loop (aifx/serving/outcome_log.py): evaluation rows, trusted candles, resolved bars, live figures.
EVAL_DROP_REASONS = ("full", "database", "shadow", "bar")
EVAL_DROPPED = Counter(
    "aifx_evaluation_rows_dropped", "Evaluation-log rows or shadow decisions dropped, by reason", ["reason"]
)
EVAL_SPOOLED = Counter(
    "aifx_evaluation_rows_spooled", "Evaluation-log rows put in the local spool while the database refused connections"
)
EVAL_LOGGED = Counter("aifx_evaluation_bars_logged", "Bars written to the evaluation log (first writer of each)")
CANDLE_CONFLICTS = Counter(
    "aifx_candle_conflicts", "Trusted candles that differ from the stored one beyond the tolerance (first wins)"
)
RESOLVED = Counter("aifx_outcomes_resolved", "Logged bars resolved from later candles")
EXPIRED = Counter("aifx_outcomes_expired", "Logged bars expired without covering candles")
VOIDED = Counter(
    "aifx_outcomes_void", "Logged bars set aside unresolved (no trusted candle of their own, ATR too small)"
)
PENDING = Gauge("aifx_outcomes_pending", "Logged bars waiting for later candles", multiprocess_mode="livemostrecent")
PENDING_AGE = Gauge(
    "aifx_outcomes_pending_oldest_seconds",
    "Age of the oldest pending bar (0 when none)",
    multiprocess_mode="livemostrecent",
)
LIVE_HIT_RATE = Gauge(
    "aifx_live_hit_rate",
    "Share of a version's resolved long/short signals that reached take profit",
    ["version"],
    multiprocess_mode="livemostrecent",
)
LIVE_MEAN_PIPS = Gauge(
    "aifx_live_mean_pips",
    "Mean pips after cost per resolved signal of a version",
    ["version"],
    multiprocess_mode="livemostrecent",
)
LIVE_SIGNALS = Gauge(
    "aifx_live_signals", "Resolved long/short signals of a version", ["version"], multiprocess_mode="livemostrecent"
)
# The seed's monitoring target: Stage 1 recall above 70 % on live bars (alert AIFXStage1RecallBelowTarget).
LIVE_STAGE1_RECALL = Gauge(
    "aifx_live_stage1_recall",
    "Share of a version's resolved reversal bars its Stage 1 fired on (NaN before the first)",
    ["version"],
    multiprocess_mode="livemostrecent",
)
LIVE_STAGE1_PRECISION = Gauge(
    "aifx_live_stage1_precision",
    "Share of a version's resolved Stage 1 firings that were reversals (NaN before the first)",
    ["version"],
    multiprocess_mode="livemostrecent",
)
LIVE_STAGE1_REVERSALS = Gauge(
    "aifx_live_stage1_reversals",
    "Resolved bars of a version that were reversals (the recall's denominator: how much it rests on)",
    ["version"],
    multiprocess_mode="livemostrecent",
)
# The seed's other target, A/B predictions being recorded (alert AIFXExperimentNotRecording).
EXPERIMENT_PREDICTIONS = Counter(
    "aifx_experiment_predictions", "Predictions recorded under the active experiment, by variant", ["variant"]
)
EXPERIMENT_ACTIVE = Gauge(
    "aifx_experiment_active", "1 while an experiment is active, else 0", multiprocess_mode="livemostrecent"
)
WALKFORWARD_HIT_RATE = Gauge(
    "aifx_walkforward_hit_rate",
    "Share of the version's walk-forward backtest trades that reached take profit (model metadata)",
    ["version"],
    multiprocess_mode="livemostrecent",
)
# Input drift against training (aifx/drift.py): each entry worker keeps its own rolling windows per
# (pair, timeframe, version) and sets, per version and feature (the version's features plus
# `stage1_probability`), the largest PSI over its windows with enough rows. `livemax` exports the largest
# value over the live workers: a pair drifting in either worker's traffic shows, and a dead worker's
# values leave with it. Labels: configured versions with a reference x their own feature names.
FEATURE_DRIFT = Gauge(
    "aifx_feature_drift_psi",
    "PSI of recent served inputs against the version's training reference, per feature and for the Stage 1 "
    "output (max over pair/timeframe windows with enough rows, aifx/drift.py MIN_ROWS; 0 when none has)",
    ["version", "feature"],
    multiprocess_mode="livemax",
)
# The alert (AIFXFeatureDrift) reads the ratio, not the PSI: each window is held to the threshold calibrated
# for its own row count (aifx/drift.py calibrate; windows fill from 200 to 500 rows), so "some window of some
# worker breaches" is exactly the largest ratio above 1, which livemax keeps across workers. The threshold
# gauge is the calibrated one of a full window, constant per (version, feature): for dashboards and reading.
FEATURE_DRIFT_RATIO = Gauge(
    "aifx_feature_drift_psi_ratio",
    "Largest PSI / alert threshold over the version's windows, per feature and for the Stage 1 output (the "
    "threshold calibrated for the window's row count; above 1: a window breaches; 0 while none is judged)",
    ["version", "feature"],
    multiprocess_mode="livemax",
)
FEATURE_DRIFT_THRESHOLD = Gauge(
    "aifx_feature_drift_psi_threshold",
    "Alert threshold of the PSI of a full drift window (500 rows), per feature and for the Stage 1 output: "
    "calibrated on the training rows (zero drift breaches in <= 1 % of windows), or AIFX_DRIFT_FALLBACK_PSI",
    ["version", "feature"],
    multiprocess_mode="livemax",
)

# Paired comparisons of the active version (a) with each other loaded version (b), set by the promoter's
# worker: 1 for the current state, 0 for the others (aifx/paired.py STATES), so alerts match state="...".
COMPARISON_STATE = Gauge(
    "aifx_comparison_state",
    "State of the paired always-valid comparison of version b against the active version a",
    ["a", "b", "state"],
    multiprocess_mode="livemostrecent",
)
# Sample-ratio mismatch of the active experiment's user split: the anytime-valid p-value min(1, 1/e) of the
# sequential multinomial test (aifx/srm.py), valid however often it is read; alert below 0.001.
SRM_P_VALUE = Gauge(
    "aifx_experiment_srm_p_value",
    "Anytime-valid p-value (1/e-value, sequential multinomial test) of the active experiment's users per variant "
    "against its traffic split",
    multiprocess_mode="livemostrecent",
)


for _variant in ("A", "B"):  # from 0, so increase() sees the first recorded prediction
    EXPERIMENT_PREDICTIONS.labels(variant=_variant)
for _reason in EVAL_DROP_REASONS:
    EVAL_DROPPED.labels(reason=_reason)
for _reason in ERROR_REASONS:  # start every bounded series at 0 so rate() sees the first error
    ERRORS.labels(reason=_reason)
for _stage in STAGES:
    STAGE_FAILURES.labels(stage=_stage)


class MetricLabels:
    """Maps raw values to bounded label values."""

    def __init__(self, versions: Iterable[str]) -> None:
        self.versions = frozenset(versions)

    def version(self, value: str | None) -> str:
        return value if value in self.versions else UNKNOWN

    @staticmethod
    def reason(value: str) -> str:
        return value if value in ERROR_REASONS else "internal"

    @staticmethod
    def stage(value: str) -> str:
        return value if value in STAGES else UNKNOWN


def observe_prediction(labels: MetricLabels, version: str, signal: str, stage1_prob: float, confidence: float) -> None:
    """Count one served prediction."""
    count, stage1, confident = _prediction_series(labels.version(version), signal)
    count.inc()
    stage1.observe(stage1_prob)
    confident.observe(confidence)


@functools.lru_cache(maxsize=256)  # bounded label values: configured versions (else unknown) x three signals
def _prediction_series(version: str, signal: str) -> tuple[Any, Any, Any]:
    """The three series a served prediction updates (`.labels()` takes a lock and checks names: ~1.4 us each)."""
    signal = signal if signal in ("long", "short", "hold") else UNKNOWN
    return (
        PREDICTIONS.labels(version=version, signal=signal),
        STAGE1_PROBABILITY.labels(version=version),
        CONFIDENCE.labels(version=version),
    )


def count_out_of_domain(labels: MetricLabels, version: str) -> None:
    """Count one served prediction outside its version's training domain."""
    _out_of_domain_series(labels.version(version)).inc()


@functools.lru_cache(maxsize=64)  # configured versions and unknown
def _out_of_domain_series(version: str) -> Any:
    return OUT_OF_DOMAIN.labels(version=version)


def start_out_of_domain(labels: MetricLabels) -> None:
    """Create every configured version's series at 0, so rate() sees the first out-of-domain request."""
    for v in sorted(labels.versions):
        OUT_OF_DOMAIN.labels(version=v)


def count_error(reason: str) -> None:
    ERRORS.labels(reason=MetricLabels.reason(reason)).inc()


def set_active(labels: MetricLabels, active: str | None) -> None:
    """Publish the active version (1) and the others (0)."""
    for v in sorted(labels.versions):
        ACTIVE_VERSION.labels(version=v).set(1.0 if v == active else 0.0)


def set_loaded(labels: MetricLabels, loaded: Iterable[str]) -> None:
    ok = set(loaded)
    for v in sorted(labels.versions):
        VERSION_LOADED.labels(version=v).set(1.0 if v in ok else 0.0)


def set_base_rates(labels: MetricLabels, rates: Mapping[str, float]) -> None:
    """Publish each configured version's Stage 1 training base rate."""
    for version, rate in sorted(rates.items()):
        TRAINING_BASE_RATE.labels(version=labels.version(version)).set(rate)


def count_evaluation_drop(reason: str, rows: int = 1) -> None:
    """Evaluation rows dropped: the queue was full, the database failed, a shadow score failed, or the bar
    may not be logged (off its grid, in the future, older than the expiry, prices outside the band)."""
    EVAL_DROPPED.labels(reason=reason if reason in EVAL_DROP_REASONS else "database").inc(rows)


def set_backlog(pending: int, oldest_age_s: float) -> None:
    PENDING.set(pending)
    PENDING_AGE.set(oldest_age_s)


def set_live(labels: MetricLabels, version: str, live: Mapping[str, object]) -> None:
    """Publish a version's live hit rate, mean pips, signals and Stage 1 recall and precision (NaN while undefined)."""
    name = labels.version(version)
    tp, fn = live.get("tp"), live.get("fn")
    reversals = tp + fn if isinstance(tp, int) and isinstance(fn, int) else None
    for gauge, value in (
        (LIVE_HIT_RATE, live.get("hit_rate")),
        (LIVE_MEAN_PIPS, live.get("mean_pips")),
        (LIVE_SIGNALS, live.get("signals")),
        (LIVE_STAGE1_RECALL, live.get("stage1_recall")),
        (LIVE_STAGE1_PRECISION, live.get("stage1_precision")),
        (LIVE_STAGE1_REVERSALS, reversals),
    ):
        gauge.labels(version=name).set(float(value) if isinstance(value, int | float) else math.nan)


def set_walkforward_hit_rates(labels: MetricLabels, versions: Iterable[str], rates: Mapping[str, float]) -> None:
    """Each configured version's walk-forward take-profit rate (NaN when its metadata has none)."""
    for version in versions:
        WALKFORWARD_HIT_RATE.labels(version=labels.version(version)).set(rates.get(version, math.nan))


def set_feature_drift(
    labels: MetricLabels,
    version: str,
    names: Iterable[str],
    psi: Mapping[str, float],
    ratio: Mapping[str, float] | None = None,
) -> None:
    """Publish a version's PSI and ratio to its alert thresholds per feature (`names`: its features and
    stage1_probability; 0 for a name without a value, i.e. no window with enough rows)."""
    name = labels.version(version)
    for feature in names:
        FEATURE_DRIFT.labels(version=name, feature=feature).set(psi.get(feature, 0.0))
        FEATURE_DRIFT_RATIO.labels(version=name, feature=feature).set((ratio or {}).get(feature, 0.0))


def set_feature_drift_thresholds(labels: MetricLabels, version: str, thresholds: Mapping[str, float]) -> None:
    """Publish a version's alert threshold per feature for a full window (set once, at start)."""
    name = labels.version(version)
    for feature, value in thresholds.items():
        FEATURE_DRIFT_THRESHOLD.labels(version=name, feature=feature).set(value)


def set_comparison_states(states: Mapping[tuple[str, str], str]) -> None:
    """Publish each (a, b) comparison's state as 1 and its other states as 0 (labels: loaded versions only).

    Pairs published before and gone now (another active version) drop to 0: multiprocess files keep a
    series once written, so clearing the in-process children would leave their last value behind.
    """
    values = state_gauge(states)
    for key in _PUBLISHED_STATES - values.keys():
        COMPARISON_STATE.labels(*key).set(0.0)
    for (a, b, state), value in values.items():
        COMPARISON_STATE.labels(a=a, b=b, state=state).set(value)
    _PUBLISHED_STATES.update(values)


_PUBLISHED_STATES: set[tuple[str, str, str]] = set()


def signal_series(pair: str, timeframe: str) -> tuple[str, str]:
    """The labels of a series (a canonical pair of the instrument table and a canonical timeframe)."""
    return pair, timeframe if timeframe in instruments.METRIC_TIMEFRAMES else "other"


def set_signal_subscribers(pair: str, timeframe: str, count: int) -> None:
    SIGNAL_SUBSCRIBERS.labels(*signal_series(pair, timeframe)).set(count)


def count_signal_events(pair: str, timeframe: str, events: int) -> None:
    SIGNAL_EVENTS.labels(*signal_series(pair, timeframe)).inc(events)


def signal_seen(pair: str, timeframe: str, bar_time: datetime) -> None:
    """A signal event of this bar exists: the next one is due by its stall deadline."""
    labels = signal_series(pair, timeframe)
    if labels[1] == "other":
        return  # no deadline for a timeframe the alert does not watch
    due = instruments.stall_deadline(bar_time, timeframe).timestamp()
    if due > _SIGNAL_DUE.get(labels, 0.0):  # an older bar posted late moves no deadline back
        _SIGNAL_DUE[labels] = due
        SIGNAL_DUE.labels(*labels).set(due)


_SIGNAL_DUE: dict[tuple[str, str], float] = {}
