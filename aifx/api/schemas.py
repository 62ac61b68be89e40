"""Request bodies of the REST API (field names as in the seed); responses are in aifx/api/responses.py."""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

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


class OutcomeRequest(BaseModel):
    """POST /reversal/predictions/{prediction_id}/outcome: the realized result in pips (a hit is pips > 0)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    pips: float = Field(strict=True, examples=[12.5], description="a finite number")
