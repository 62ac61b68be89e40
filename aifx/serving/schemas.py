"""Request bodies of the REST API (field names as in the seed); responses are in aifx/http/responses.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired, cast

import msgspec
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
    with_config,
)
from pydantic_core import core_schema
from typing_extensions import TypedDict

from aifx.serving.errors import format_errors
from experiments.schema import TIMEFRAME_PATTERN

# The service uses only the last `min_candles` (47-53) candles of a request. 1,000 candles are at most
# ~210 KB of JSON even pretty-printed with 17-digit prices (131 bytes each compact, as EUR/USD data
# is usually sent), so every request within this limit fits the predict routes' 256 KiB body limit
# (AIFX_MAX_PREDICT_BODY_BYTES).
MAX_CANDLES = 1_000
MAX_BATCH_ITEMS = 100
# Feature rows: the registered versions take 10-12 features (aifx/features.py has 18 in all).
MAX_FEATURES = 64
# Every registered feature is a log return, a ratio to the bar range or ATR, or an oscillator / 100:
# on a year of EUR/USD 1h bars none exceeds 8.3 in absolute value, and the ATR ratios are bounded
# by construction (ATR includes the bar; ~600 at the very worst after a long flat stretch). 10,000
# is > 1,000 times what real data gives, so unusual rows stay served (drift monitoring needs them),
# while 1e300 (inf in the models' float32) or 1e30 (inf once scaled) cannot reach a stage call that
# other requests share. A new unbounded feature (e.g. raw volume) must revisit this.
FEATURE_LIMIT = 10_000.0
USER_ID_LEN = 128
# Times the service takes (candle times, time filters of queries): datetime64[ns] wraps around after
# 2262-04-11, and nothing before 1970 or after 2100 is forex data the models could have seen.
FIRST_TIME, END_TIME = "1970-01-01", "2100-01-01"
_FIRST_UTC, _END_UTC = (datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (FIRST_TIME, END_TIME))
_TIME_RANGE = f"{FIRST_TIME}T00:00:00Z to {END_TIME}T00:00:00Z"


def _utc_in_range(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """A query's time: parsed as pydantic reads a datetime, naive means UTC, within [FIRST_TIME, END_TIME] in UTC.

    An offset that moves a year-1 or year-9999 time out of what datetime holds is out of range too
    (a 422, where converting it later raised OverflowError).
    """
    try:
        parsed: datetime = handler(value)
    except ValidationError as exc:
        why = exc.errors(include_url=False)[0]["msg"] if exc.errors() else "not a time"
        raise ValueError(
            f"{why}; send ISO-8601 (e.g. 2024-01-02T00:00:00Z; no offset means UTC) from {_TIME_RANGE}"
        ) from None
    try:
        utc = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        utc = None  # before year 1 or after year 9999 in UTC
    if utc is None or not _FIRST_UTC <= utc <= _END_UTC:
        shown = f"{value:.40}" if isinstance(value, str) else repr(value)[:40]
        raise ValueError(f"{shown} is outside the supported range {_TIME_RANGE} (after conversion to UTC)")
    return utc


# A datetime query parameter (`since`): aware UTC within the candle range; anything else is a 422.
QueryTime = Annotated[datetime, WrapValidator(_utc_in_range)]

_NEED_INPUT = (
    "send `data` (candles: objects with timestamp, open, high, low, close and optional volume) "
    "or `features` (rows in the version's feature order)"
)  # or neither: the service answers from the trusted candles posted to /reversal/candles


Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# Text or a number (not a bool) in one Rust-side check with one error message; aifx.serving.inputs
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


class FastCandle(msgspec.Struct, gc=False):
    """CandleIn as the hot routes' fast path reads it (aifx/serving/fast_body.py): the same fields and
    constraints in a struct (a third cheaper to decode than a dict); an absent volume reads as None, as
    inputs.to_candles reads a CandleIn without one."""

    timestamp: str | int | float  # CandleIn's Timestamp: text, or a number that is not a bool
    open: Annotated[float, msgspec.Meta(gt=0)]  # JSON has no NaN or infinity; msgspec refuses 1e400
    high: Annotated[float, msgspec.Meta(gt=0)]
    low: Annotated[float, msgspec.Meta(gt=0)]
    close: Annotated[float, msgspec.Meta(gt=0)]
    volume: Annotated[float, msgspec.Meta(ge=0)] | None = None


def _printable_user_id(value: str) -> str:
    """A user id is stored and hashed as sent: 1-128 printable characters, not only spaces."""
    if not value.isprintable() or not value.strip():
        raise ValueError(
            f"must be 1-{USER_ID_LEN} printable characters and not blank "
            "(no control characters such as NUL, tab or newline)"
        )
    return value


UserId = Annotated[str, Field(min_length=1, max_length=USER_ID_LEN), AfterValidator(_printable_user_id)]
Feature = Annotated[float, Field(ge=-FEATURE_LIMIT, le=FEATURE_LIMIT, allow_inf_nan=False)]


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)

    pair: str = Field(min_length=1, max_length=32, examples=["EUR/USD"])
    timeframe: str = Field(min_length=1, max_length=16, examples=["1h"])
    data: list[CandleIn] | None = Field(
        default=None, max_length=MAX_CANDLES, description=f"candles, oldest first (at most {MAX_CANDLES})"
    )
    features: list[Annotated[list[Feature], Field(max_length=MAX_FEATURES)]] | None = Field(
        default=None,
        max_length=MAX_CANDLES,
        description=(
            "precomputed, unscaled feature rows (window x features); used when present; "
            f"every value within +-{FEATURE_LIMIT:,.0f}"
        ),
    )

    bar_time: QueryTime | None = Field(
        default=None,
        description="without `data` and `features`: the stored bar to answer for (default: the latest closed one)",
    )

    @model_validator(mode="after")
    def _has_input(self) -> _Inputs:
        if self.data is not None and not self.data and not self.features:
            raise ValueError(f"no input: `data` is empty; {_NEED_INPUT}, or neither to use the stored candles")
        if self.bar_time is not None and (self.data or self.features):
            raise ValueError("bar_time: only for a request without `data` and `features` (stored candles)")
        return self


class PredictRequest(_Inputs):
    """POST /reversal/predict."""

    version: str | None = Field(default=None, max_length=64, description="default: the active version")
    user_id: UserId | None = Field(
        default=None,
        validation_alias=AliasChoices("user_id", "userId"),
        description=f"1-{USER_ID_LEN} printable characters (no control characters)",
    )


class LegacyPredictRequest(PredictRequest):
    """POST /predict (the old engine): pair and timeframe are optional."""

    pair: str = Field(default="", max_length=32)  # type: ignore[assignment]
    timeframe: str = Field(default="", max_length=16)  # type: ignore[assignment]


@dataclass(frozen=True)
class InvalidItem:
    """A batch item that is not a valid PredictRequest: only its error message is kept."""

    message: str


def _invalid_item(item: dict[str, Any]) -> PredictRequest | InvalidItem:
    """Validate a JSON object that failed as a PredictRequest again on its own, keeping only the message.

    The object's Python copy lives only during this call: a 1 MB item of `[]` lists is ~20 MB of
    Python objects, which a batch used to keep until every other item was answered.
    """
    try:
        return PredictRequest.model_validate(item)  # JSON-mode and Python-mode rules agree: not expected
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return InvalidItem(format_errors(errors))


# Valid items are parsed in the same pass as the body (from the JSON bytes); an invalid JSON object
# becomes an InvalidItem with its message, so one bad item does not fail the others. An item that
# is not an object fails the whole body (422), as before.
BatchItem = Annotated[
    PredictRequest
    | Annotated[
        InvalidItem,
        GetPydanticSchema(
            lambda _type, _handler: core_schema.no_info_after_validator_function(
                _invalid_item, core_schema.dict_schema(core_schema.str_schema())
            )
        ),
        WithJsonSchema({"type": "object"}),
    ],
    Field(union_mode="left_to_right"),
]


class BatchRequest(BaseModel):
    """POST /reversal/predict/batch: each item is validated on its own."""

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class CompareRequest(_Inputs):
    """POST /reversal/compare."""

    versions: list[str] | None = Field(default=None, max_length=16, description="default: every loaded version")


class CandlesRequest(BaseModel):
    """POST /reversal/candles: closed bars from a trusted source (a backend posts each one)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    pair: str = Field(min_length=1, max_length=32, examples=["EUR/USD"])
    timeframe: str = Field(pattern=TIMEFRAME_PATTERN, examples=["1h"], description="1-8 letters and digits")
    data: list[CandleIn] = Field(min_length=1, max_length=MAX_CANDLES, description="closed candles, oldest first")


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


def inline_schema(
    model: type[BaseModel], mode: Literal["validation", "serialization"] = "validation"
) -> dict[str, Any]:
    """model's JSON schema with local `$ref`s replaced by their definitions (BentoML's spec drops `$defs`)."""
    schema = model.model_json_schema(mode=mode)
    return cast("dict[str, Any]", _inline(schema, schema.pop("$defs", {})))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
