"""Row -> JSON-ready dict conversion, UTC timestamps and the evaluation log's record types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC; naive values (SQLite) are UTC by construction."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def experiment_dict(row: Any) -> dict[str, Any]:
    """An experiments row as a plain dict (timestamps as ISO strings, plus `active`)."""
    return {
        "experiment_id": row.experiment_id,
        "name": row.name,
        "description": row.description,
        "variant_a": row.variant_a,
        "variant_b": row.variant_b,
        "traffic_split": row.traffic_split,
        "salt": row.salt,
        "status": row.status,
        "active": row.status == "active",
        "created_at": iso(row.created_at),
        "activated_at": iso(row.activated_at),
        "stopped_at": iso(row.stopped_at),
    }


def outcome_dict(pred: Any, pips: float, recorded_at: datetime, created: bool) -> dict[str, Any]:
    """Echo of a recorded outcome with the prediction it belongs to."""
    return {
        "prediction_id": pred.prediction_id,
        "experiment_id": pred.experiment_id,
        "variant": pred.variant,
        "model_version": pred.model_version,
        "pips": pips,
        "hit": pips > 0,
        "recorded_at": iso(recorded_at),
        "created": created,
    }


def prediction_dict(row: Any) -> dict[str, Any]:
    """A predictions row (optionally joined with its outcome's `pips`) as a plain dict."""
    data = dict(row._mapping)
    data["created_at"] = iso(data["created_at"])
    if data.get("bar_time") is not None:
        data["bar_time"] = iso(as_utc(data["bar_time"]))
    data.setdefault("pips", None)
    return data


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; naive values (SQLite) are UTC by construction."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# -- evaluation log (experiments.evaluation) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """One version's decision on a bar; served = responses that carried it (0 for a shadow)."""

    version: str
    signal: str
    p_reversal: float
    p_long: float | None = None
    served: int = 0


@dataclass(frozen=True, slots=True)
class BarLog:
    """One logged request: the bar it is about (last candle) and the decisions made on it."""

    pair: str
    timeframe: str
    bar_time: datetime
    entry: float
    atr: float
    pip: float
    decisions: tuple[Decision, ...]


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLC candle at its open time ts."""

    ts: datetime
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class CandleSeries:
    """Stored candles in time order, as parallel tuples."""

    ts: tuple[datetime, ...]
    open: tuple[float, ...]
    high: tuple[float, ...]
    low: tuple[float, ...]
    close: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A logged decision as stored (result fields None until resolved; pips None for hold)."""

    version: str
    signal: str
    p_reversal: float
    p_long: float | None
    served: int
    result: str | None = None
    pips: float | None = None
    label_held: bool | None = None


@dataclass(frozen=True, slots=True)
class PendingBar:
    """A pending bar with the candles that resolve it: `after` holds exactly `horizon` candles."""

    id: int
    pair: str
    timeframe: str
    bar_time: datetime
    entry: float
    atr: float
    pip: float
    created_at: datetime
    decisions: tuple[StoredDecision, ...]
    after: CandleSeries
    before: CandleSeries


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of one version's decision on a bar (result and pips None for hold)."""

    bar_id: int
    version: str
    result: str | None
    pips: float | None
    label_held: bool | None
