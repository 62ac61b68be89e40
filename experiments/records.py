"""Row -> JSON-ready dict conversion and UTC timestamps."""

from __future__ import annotations

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
    data.setdefault("pips", None)
    return data
