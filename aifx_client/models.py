"""Typed request and response models of the AIFX REST API (unknown response fields are kept)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Signal = Literal["long", "short", "hold"]
Source = Literal["reversal", "legacy"]


class _Response(BaseModel):
    """Base of response models: extra fields from newer servers are kept, not rejected."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class Candle(BaseModel):
    """One OHLC(V) bar; timestamp as ISO-8601 text, a datetime or Unix seconds/milliseconds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    timestamp: datetime | str | int | float
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None


class PredictRequest(BaseModel):
    """One predict request (also one item of a batch)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pair: str
    timeframe: str = "1h"
    data: list[Candle] | None = None
    features: list[list[float]] | None = None
    version: str | None = None
    user_id: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON body (unset optional fields are left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class TradeLevels(_Response):
    """The trade a long or short is scored by: opened at the bar's close, closed at a level or after horizon_bars."""

    entry: float
    take_profit: float
    stop_loss: float
    horizon_bars: int


class Prediction(_Response):
    """A predict result; `source` says whether it came from /reversal/predict or the legacy /predict."""

    pair: str = ""
    timeframe: str = ""
    signal: Signal
    confidence: float
    stage1_prob: float | None = None
    stage2_prob: float | None = None
    model_version: str | None = None
    factors: dict[str, Any] = Field(default_factory=dict)
    timestamp: str | None = None
    prediction_id: str | None = None
    experiment_id: str | None = None
    variant: Literal["A", "B"] | None = None
    trade: TradeLevels | None = None  # long or short of a known pair: the levels its outcome is scored by
    source: Source = "reversal"


class LegacyPrediction(_Response):
    """The legacy /predict result: {prediction, confidence, factors}."""

    prediction: str
    confidence: float
    factors: dict[str, Any] = Field(default_factory=dict)


class BatchItem(_Response):
    """One entry of a batch result: each item succeeds or fails on its own."""

    success: bool
    data: Prediction | None = None
    error: str | None = None


class VersionSignal(_Response):
    """One loaded version's decision on a bar."""

    signal: Signal
    confidence: float
    stage1_prob: float | None = None
    stage2_prob: float | None = None


class ComparedPrediction(VersionSignal):
    """One version's answer inside a comparison."""

    model_version: str


class Comparison(_Response):
    """The same input through several versions."""

    pair: str
    timeframe: str
    predictions: dict[str, ComparedPrediction]
    consensus: str | None = None
    disagreement: bool
    timestamp: str | None = None


class ModelInfo(_Response):
    """One configured model version."""

    version: str
    name: str | None = None
    active: bool = False
    loaded: bool = False
    error: str | None = None
    stages: dict[str, Any] = Field(default_factory=dict)
    threshold: float | None = None
    window: int | None = None
    min_candles: int | None = None
    features: list[str] = Field(default_factory=list)
    label_params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)


class ModelsInfo(_Response):
    """Active version, default, fallback order and every configured version."""

    active_version: str | None
    default: str | None = None
    fallback_order: list[str] = Field(default_factory=list)
    versions: list[ModelInfo] = Field(default_factory=list)


class SwitchResult(_Response):
    """Answer of a version switch."""

    active_version: str | None
    previous_version: str | None = None


class Experiment(_Response):
    """An A/B experiment between two model versions (traffic_split is the share sent to B)."""

    experiment_id: str
    name: str | None = None
    description: str | None = None
    variant_a: str
    variant_b: str
    traffic_split: float
    status: str | None = None
    active: bool | None = None
    created_at: str | None = None
    activated_at: str | None = None
    stopped_at: str | None = None


class VariantMetrics(_Response):
    """The seed's per-variant metrics plus realized outcomes."""

    count: int
    signals: dict[str, int] = Field(default_factory=dict)
    avg_confidence: float | None = None
    outcomes: dict[str, Any] = Field(default_factory=dict)


class Variant(_Response):
    """One variant of an experiment with its metrics."""

    model_version: str
    traffic_split: float
    metrics: VariantMetrics


class ExperimentMetrics(_Response):
    """Per-variant metrics and the B-vs-A comparison (winner is None below the minimum sample)."""

    experiment_id: str
    name: str | None = None
    active: bool | None = None
    status: str | None = None
    variants: dict[str, Variant]
    comparison: dict[str, Any] | None = None

    @property
    def winner(self) -> str | None:
        """The comparison's winner ("A", "B") or None."""
        return (self.comparison or {}).get("winner")


class Outcome(_Response):
    """Echo of a recorded outcome."""

    prediction_id: str
    experiment_id: str | None = None
    variant: str | None = None
    pips: float


class Health(_Response):
    """GET /health (flat, not enveloped)."""

    status: str  # healthy, degraded or unhealthy
    model_loaded: bool
    model_version: str | None = None
    timestamp: str | None = None
    environment: str | None = None
    loaded_versions: list[str] = Field(default_factory=list)
    failed_versions: dict[str, str] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the service can predict (healthy or degraded)."""
        return self.model_loaded and self.status != "unhealthy"


class CandlesResult(_Response):
    """POST /reversal/candles: what the closed candles added and how many bars they closed."""

    pair: str = ""
    timeframe: str = ""
    inserted: int
    duplicates: int = 0
    conflicts: int = 0
    bars_scored: int = 0


class SignalEvent(_Response):
    """One bar that trusted candles closed: the active version's answer (with `trade`) and every version's decision."""

    id: int
    pair: str
    timeframe: str
    bar_time: datetime
    active_version: str | None = None
    signal: Prediction | None = None
    versions: dict[str, VersionSignal] = Field(default_factory=dict)
