"""Many predictions served under an experiment, recorded in one transaction (a batch is one commit, not 100).

A request that is abandoned (its caller timed out) records nothing: the transaction checks `abandoned`
before every row and before it commits, and rolls back when it is set.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import DataError, IntegrityError

from experiments import validation as v
from experiments.errors import ExperimentError, Invalid, KeyReused
from experiments.records import as_utc, utcnow
from experiments.schema import experiments, predictions

Write = Callable[[], AbstractContextManager[Connection]]  # a write transaction (ExperimentStore.write)


class Abandoned(RuntimeError):
    """The request that asked for these records is gone: nothing was recorded."""


@dataclass(frozen=True)
class Served:
    """One prediction to record: who, which variant and model, what it said, its bar and Idempotency-Key."""

    experiment_id: str
    user_id: str
    variant: str
    model_version: str
    signal: str
    confidence: float
    stage1_prob: float | None = None
    stage2_prob: float | None = None
    idempotency_key: str | None = None
    bar: tuple[str, str, datetime] | None = None


# The prediction_id, None (experiment not active), or the item's error (a DataError: a value the database refused).
Result = str | None | ExperimentError | DataError


def record_all(write: Write, items: list[Served], abandoned: threading.Event | None = None) -> list[Result]:
    """Record every item in one write transaction; each item's id, None or error in its place.

    A row the database refuses (a concurrent retry won the same key, a value it rejects as data)
    rolls the batch back and records item by item, so that only that item fails.
    """
    gone = abandoned or threading.Event()
    try:
        with write() as conn:
            out = _in_transaction(conn, items, gone.is_set)
            if gone.is_set():
                raise Abandoned("the request was abandoned before its predictions were committed")
            return out
    except (IntegrityError, DataError):
        return [_one_by_one(write, item, gone.is_set) for item in items]


def _one_by_one(write: Write, item: Served, is_gone: Callable[[], bool]) -> Result:
    for attempt in range(2):  # a concurrent retry that won the key is found on the second look
        try:
            with write() as conn:
                result = _in_transaction(conn, [item], is_gone)[0]
                if is_gone():
                    raise Abandoned("the request was abandoned before its predictions were committed")
                return result
        except DataError as exc:
            return exc
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _in_transaction(conn: Connection, items: list[Served], is_gone: Callable[[], bool]) -> list[Result]:
    rows: list[dict[str, Any]] = []
    out: list[Result] = []
    states: dict[str, Any] = {}
    for item in items:
        if is_gone():
            raise Abandoned("the request was abandoned while its predictions were recorded")
        try:
            out.append(_prepare(conn, item, states, rows))
        except ExperimentError as exc:
            out.append(exc)
    if rows:
        conn.execute(predictions.insert(), rows)
    return out


def _prepare(conn: Connection, item: Served, states: dict[str, Any], rows: list[dict[str, Any]]) -> str | None:
    """Validate one item and queue its row; the id it gets (or had, under its key) or None when not active."""
    key = v.check_idempotency_key(item.idempotency_key)
    if key is not None:
        found = _by_key(conn, key, item, rows)
        if found is not None:
            return found
    if item.experiment_id not in states:
        stmt = select(experiments).where(experiments.c.experiment_id == v.check_id(item.experiment_id))
        states[item.experiment_id] = conn.execute(stmt.with_for_update(read=True)).first()
    row = states[item.experiment_id]
    if row is None or row.status != "active":
        return None
    expected = row.variant_a if item.variant == "A" else row.variant_b
    if item.model_version != expected:
        raise Invalid(f"variant {item.variant} of {item.experiment_id!r} is {expected!r}, not {item.model_version!r}")
    values = {
        "prediction_id": str(uuid.uuid4()),
        "experiment_id": item.experiment_id,
        "user_id": v.check_user_id(item.user_id),
        "variant": v.check_variant(item.variant),
        "model_version": v.check_version(item.model_version, "model_version"),
        "signal": v.check_signal(item.signal),
        "confidence": v.check_probability(item.confidence, "confidence"),
        "stage1_prob": v.check_probability(item.stage1_prob, "stage1_prob", required=False),
        "stage2_prob": v.check_probability(item.stage2_prob, "stage2_prob", required=False),
        "created_at": utcnow(),
        "idempotency_key": key,
        **bar_columns(item.bar),
    }
    rows.append(values)
    return str(values["prediction_id"])


def _by_key(conn: Connection, key: str, item: Served, rows: list[dict[str, Any]]) -> str | None:
    """The prediction recorded under this key (earlier, or earlier in this batch), or None."""
    for queued in rows:
        if queued["idempotency_key"] == key:
            return _same_request(queued["experiment_id"], queued["user_id"], item, str(queued["prediction_id"]))
    row = conn.execute(select(predictions).where(predictions.c.idempotency_key == key)).first()
    return None if row is None else _same_request(row.experiment_id, row.user_id, item, str(row.prediction_id))


def _same_request(experiment_id: str, user_id: str, item: Served, prediction_id: str) -> str:
    if experiment_id != item.experiment_id or user_id != item.user_id:
        raise KeyReused("Idempotency-Key was already used for another request; send a new key per request")
    return prediction_id


def bar_columns(bar: tuple[str, str, datetime] | None) -> dict[str, Any]:
    """The prediction's bar columns (all None without a bar)."""
    if bar is None:
        return {"pair": None, "timeframe": None, "bar_time": None}
    pair, timeframe, bar_time = bar
    return {"pair": pair[:16], "timeframe": timeframe[:8], "bar_time": as_utc(bar_time)}
