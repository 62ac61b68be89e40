"""The API's routes as Call objects (method, path, body, how to read the answer): no I/O here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode

from aifx_client.models import (
    BatchItem,
    Candle,
    CandlesResult,
    Comparison,
    Experiment,
    ExperimentMetrics,
    Health,
    LegacyPrediction,
    ModelInfo,
    ModelsInfo,
    Outcome,
    Prediction,
    PredictRequest,
    SignalEvent,
    SwitchResult,
)

T = TypeVar("T")
Candles = Sequence[Candle | Mapping[str, Any]]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP call and the parser of its `data` (or of the flat body when not enveloped)."""

    method: str
    path: str
    parse: Callable[[Any], T]
    body: Any = None
    admin: bool = False
    outcome: bool = False  # sends AIFX_OUTCOME_TOKEN (ML_API_OUTCOME_TOKEN), else the admin token
    enveloped: bool = True
    answer_statuses: frozenset[int] = frozenset()  # error statuses whose body is still the answer
    idempotency_key: str | None = None  # the same on every retry of this call: the server counts it once


def new_key() -> str:
    """A fresh Idempotency-Key for one logical call."""
    return uuid.uuid4().hex


def seg(value: str) -> str:
    """A path segment, percent-encoded (a version or id never escapes its segment)."""
    return quote(str(value), safe="")


def as_request(item: PredictRequest | Mapping[str, Any]) -> PredictRequest:
    """A predict request from a model or a plain mapping (accepts userId as an alias)."""
    if isinstance(item, PredictRequest):
        return item
    values = dict(item)
    if "userId" in values and "user_id" not in values:
        values["user_id"] = values.pop("userId")
    return PredictRequest.model_validate(values)


def build_request(pair: str, timeframe: str, data: Candles | None, features: Any, **extra: Any) -> PredictRequest:
    """A validated predict request from keyword arguments (None values are left out)."""
    values = {"pair": pair, "timeframe": timeframe, "data": data, "features": features, **extra}
    return PredictRequest.model_validate({k: v for k, v in values.items() if v is not None})


def _experiments(data: Any) -> list[Experiment]:
    items = data.get("experiments", []) if isinstance(data, Mapping) else data
    return [Experiment.model_validate(x) for x in items]


def _batch(data: Any) -> list[BatchItem]:
    return [BatchItem.model_validate(x) for x in data["results"]]


def health() -> Call[Health]:
    """GET /health: flat body; a 503 still carries the health report."""
    return Call("GET", "/health", Health.model_validate, enveloped=False, answer_statuses=frozenset({503}))


def predict(req: PredictRequest, path: str) -> Call[Prediction]:
    return Call("POST", path, Prediction.model_validate, req.body(), idempotency_key=new_key())


def legacy_predict(req: PredictRequest, path: str) -> Call[LegacyPrediction]:
    return Call("POST", path, LegacyPrediction.model_validate, req.body())


def predict_batch(items: Sequence[PredictRequest | Mapping[str, Any]]) -> Call[list[BatchItem]]:
    body = {"items": [as_request(i).body() for i in items]}
    return Call("POST", "/reversal/predict/batch", _batch, body, idempotency_key=new_key())


def compare(req: PredictRequest, versions: Sequence[str] | None) -> Call[Comparison]:
    body = {k: v for k, v in req.body().items() if k not in ("version", "user_id")}
    if versions is not None:
        body["versions"] = list(versions)
    return Call("POST", "/reversal/compare", Comparison.model_validate, body)


def models() -> Call[ModelsInfo]:
    return Call("GET", "/reversal/models", ModelsInfo.model_validate)


def model_info(version: str) -> Call[ModelInfo]:
    return Call("GET", f"/reversal/models/{seg(version)}", ModelInfo.model_validate)


def switch_version(version: str) -> Call[SwitchResult]:
    return Call("POST", f"/reversal/models/{seg(version)}/switch", SwitchResult.model_validate, admin=True)


def create_experiment(
    experiment_id: str, name: str, variant_a: str, variant_b: str, traffic_split: float, description: str
) -> Call[Experiment]:
    body = {
        "experiment_id": experiment_id,
        "name": name,
        "description": description,
        "variant_a": variant_a,
        "variant_b": variant_b,
        "traffic_split": traffic_split,
    }
    return Call("POST", "/reversal/experiments", Experiment.model_validate, body, admin=True)


def activate_experiment(experiment_id: str) -> Call[Experiment]:
    path = f"/reversal/experiments/{seg(experiment_id)}/activate"
    return Call("POST", path, Experiment.model_validate, admin=True)


def stop_experiment(experiment_id: str) -> Call[Experiment]:
    path = f"/reversal/experiments/{seg(experiment_id)}/stop"
    return Call("POST", path, Experiment.model_validate, admin=True)


def experiments() -> Call[list[Experiment]]:
    return Call("GET", "/reversal/experiments", _experiments)


def experiment_metrics(experiment_id: str) -> Call[ExperimentMetrics]:
    path = f"/reversal/experiments/{seg(experiment_id)}/metrics"
    return Call("GET", path, ExperimentMetrics.model_validate)


def record_outcome(prediction_id: str, pips: float) -> Call[Outcome]:
    path = f"/reversal/predictions/{seg(prediction_id)}/outcome"
    return Call("POST", path, Outcome.model_validate, {"pips": pips}, outcome=True)


def post_candles(pair: str, timeframe: str, candles: Candles) -> Call[CandlesResult]:
    """POST /reversal/candles: closed candles are stored once (a retry counts them as duplicates)."""
    body = {"pair": pair, "timeframe": timeframe, "data": [_candle(c) for c in candles]}
    return Call("POST", "/reversal/candles", CandlesResult.model_validate, body, outcome=True)


def latest_signal(pair: str, timeframe: str) -> Call[SignalEvent | None]:
    path = f"/reversal/signals/latest?{urlencode({'pair': pair, 'timeframe': timeframe})}"
    return Call("GET", path, lambda data: None if data is None else SignalEvent.model_validate(data))


def _candle(candle: Candle | Mapping[str, Any]) -> dict[str, Any]:
    c = candle if isinstance(candle, Candle) else Candle.model_validate(candle)
    return c.model_dump(mode="json", exclude_none=True)
