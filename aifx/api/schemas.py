"""Request and response bodies of the REST API (field names as in the seed)."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, NotRequired, TypeVar

import numpy as np
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    WithJsonSchema,
    model_validator,
    with_config,
)
from pydantic_core import core_schema
from typing_extensions import TypedDict

MAX_CANDLES = 5_000
MAX_BATCH_ITEMS = 100
T = TypeVar("T")

_NEED_INPUT = (
    "send `data` (candles: objects with timestamp, open, high, low, close and optional volume) "
    "or `features` (rows in the version's feature order)"
)


Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# Text or a number (not a bool) in one Rust-side check with one error message; aifx.api.inputs
# turns it into UTC time (vectorised for ...Z text) and names a value that is not a time.
Timestamp = Annotated[
    str | float,
    GetPydanticSchema(
        lambda _type, _handler: core_schema.union_schema(
            [core_schema.str_schema(), core_schema.int_schema(strict=True), core_schema.float_schema(strict=True)],
            custom_error_type="timestamp_type",
            custom_error_message="Input should be a time",
        )
    ),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "ISO-8601 (e.g. 2017-01-02T00:00:00Z; no offset means UTC) or Unix seconds/milliseconds",
        }
    ),
]


@with_config(ConfigDict(extra="ignore"))
class CandleIn(TypedDict):
    """One OHLC(V) bar; timestamp as ISO-8601 text or Unix seconds/milliseconds.

    A TypedDict, not a model: pydantic-core validates a request's candles without building
    one Python object per candle (a third of the cost for 64 candles).
    """

    timestamp: Timestamp
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NotRequired[Annotated[float | None, Field(ge=0, allow_inf_nan=False)]]


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)

    pair: str = Field(min_length=1, max_length=32, examples=["EUR/USD"])
    timeframe: str = Field(min_length=1, max_length=16, examples=["1h"])
    data: list[CandleIn] | None = Field(
        default=None, max_length=MAX_CANDLES, description=f"candles, oldest first (at most {MAX_CANDLES})"
    )
    features: list[list[float]] | None = Field(
        default=None,
        max_length=MAX_CANDLES,
        description="precomputed, unscaled feature rows (window x features); used when present",
    )

    @model_validator(mode="after")
    def _has_input(self) -> _Inputs:
        if not self.data and not self.features:
            raise ValueError(f"no input: {_NEED_INPUT}")
        return self


class PredictRequest(_Inputs):
    """POST /reversal/predict."""

    version: str | None = Field(default=None, max_length=64, description="default: the active version")
    user_id: str | None = Field(default=None, max_length=128, validation_alias=AliasChoices("user_id", "userId"))


class LegacyPredictRequest(PredictRequest):
    """POST /predict (the old engine): pair and timeframe are optional."""

    pair: str = Field(default="", max_length=32)  # type: ignore[assignment]
    timeframe: str = Field(default="", max_length=16)  # type: ignore[assignment]


# Valid items are parsed in the same pass as the body; an invalid one stays a dict, validated
# again on its own for its error message, so one bad item does not fail the others.
BatchItem = Annotated[PredictRequest | dict[str, Any], Field(union_mode="left_to_right")]


class BatchRequest(BaseModel):
    """POST /reversal/predict/batch: each item is validated on its own."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class CompareRequest(_Inputs):
    """POST /reversal/compare."""

    versions: list[str] | None = Field(default=None, max_length=16, description="default: every loaded version")


class Envelope(BaseModel, Generic[T]):
    """The seed's envelope around every /reversal/* and /predict answer."""

    success: bool
    data: T | None = None
    error: str | None = None
    timestamp: str


class Factors(BaseModel):
    reversal_detected: bool
    direction: str | None
    direction_source: str | None = None


class PredictionData(BaseModel):
    pair: str
    timeframe: str
    signal: str = Field(examples=["long"])
    confidence: float
    stage1_prob: float
    stage2_prob: float | None
    model_version: str
    factors: Factors
    timestamp: str
    prediction_id: str | None = Field(default=None, description="only under an active experiment (with a user id)")
    experiment_id: str | None = Field(default=None, description="only under an active experiment")
    variant: Literal["A", "B"] | None = Field(default=None, description="only under an active experiment")


class BatchResult(BaseModel):
    success: bool
    data: PredictionData | None = None
    error: str | None = None


class BatchData(BaseModel):
    results: list[BatchResult]


class ComparedPrediction(BaseModel):
    signal: str
    confidence: float
    stage1_prob: float
    stage2_prob: float | None
    model_version: str


class CompareData(BaseModel):
    pair: str
    timeframe: str
    predictions: dict[str, ComparedPrediction]
    consensus: str | None
    disagreement: bool
    timestamp: str


class LegacyData(BaseModel):
    prediction: str
    confidence: float
    factors: dict[str, Any]


class Health(BaseModel):
    status: str = Field(examples=["healthy"])
    model_loaded: bool
    model_version: str | None
    timestamp: str
    environment: str
    loaded_versions: list[str] = []
    failed_versions: dict[str, str] = {}


class ExperimentCreate(BaseModel):
    """POST /reversal/experiments (the seed's fields; traffic_split is the share of users sent to B)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    experiment_id: str = Field(examples=["v30_vs_v31"], description="1-64 characters of A-Z a-z 0-9 _ . -")
    name: str = Field(examples=["Swing Point vs Profitable Logic"])
    description: str | None = Field(default=None, examples=["Compare v3.0 with v3.1"])
    variant_a: str = Field(examples=["v3.0"], description="a configured, loaded model version")
    variant_b: str = Field(examples=["v3.1"], description="a configured, loaded model version")
    traffic_split: float = Field(
        default=0.5, gt=0.0, lt=1.0, strict=True, description="share of users sent to variant B, strictly in (0, 1)"
    )


class ExperimentData(BaseModel):
    experiment_id: str
    name: str
    description: str
    variant_a: str
    variant_b: str
    traffic_split: float
    salt: str
    status: Literal["created", "active", "stopped"]
    active: bool
    created_at: str
    activated_at: str | None
    stopped_at: str | None


class ExperimentList(BaseModel):
    experiments: list[ExperimentData]
    active_experiment_id: str | None


class VariantMetrics(BaseModel):
    count: int
    signals: dict[str, int]
    avg_confidence: float | None
    outcomes: dict[str, Any] = Field(description="count, hit_rate, mean_pips, total_pips")


class VariantData(BaseModel):
    model_version: str
    traffic_split: float
    metrics: VariantMetrics


class ExperimentMetricsData(BaseModel):
    experiment_id: str
    name: str
    description: str
    status: str
    active: bool
    variants: dict[str, VariantData]
    comparison: dict[str, Any] = Field(description="B vs A: Welch t-test on pips, z-test on hit rate, winner")


class OutcomeRequest(BaseModel):
    """POST /reversal/predictions/{prediction_id}/outcome: the realized result in pips (a hit is pips > 0)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    pips: float = Field(strict=True, examples=[12.5], description="a finite number")


class OutcomeData(BaseModel):
    prediction_id: str
    experiment_id: str
    variant: Literal["A", "B"]
    model_version: str
    pips: float
    hit: bool
    recorded_at: str
    created: bool = Field(description="false when the same outcome was already recorded")


_ROWS_SCHEMA = {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}


class StageBatch(BaseModel):
    """One stage input: a version and its unscaled windows, stacked (n x window x features)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    version: str
    rows: Annotated[np.ndarray, WithJsonSchema(_ROWS_SCHEMA)]
