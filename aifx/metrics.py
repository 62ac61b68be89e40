"""Custom Prometheus metrics (prefix aifx_), exported through BentoML's own /metrics.

`bentoml serve` sets PROMETHEUS_MULTIPROC_DIR for every worker before our code is
imported, so prometheus_client writes to the shared multiprocess files that BentoML's
/metrics collects; nothing else is needed. Label values are bounded: versions come
from the configured set (anything else is "unknown"), reasons and stages from fixed lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram

UNKNOWN = "unknown"
ERROR_REASONS = (
    "validation",
    "bad_candles",
    "unknown_version",
    "version_unavailable",
    "stage_unavailable",
    "body_too_large",
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
STAGE_RETRIES = Counter("aifx_stage_call_retries", "Stage calls retried after a transient failure", ["stage"])
STAGE_FAILURES = Counter("aifx_stage_call_failures", "Stage calls that failed after every retry", ["stage"])


for _reason in ERROR_REASONS:  # start every bounded series at 0 so rate() sees the first error
    ERRORS.labels(reason=_reason)
for _stage in STAGES:
    STAGE_RETRIES.labels(stage=_stage)
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
    v = labels.version(version)
    PREDICTIONS.labels(version=v, signal=signal if signal in ("long", "short", "hold") else UNKNOWN).inc()
    STAGE1_PROBABILITY.labels(version=v).observe(stage1_prob)
    CONFIDENCE.labels(version=v).observe(confidence)


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
