"""Predictions served under an experiment and their outcomes: record, read, correct, purge, erase.

Outcomes are accepted while the experiment is active and for OUTCOME_GRACE after it stopped (trades opened
just before the stop still close); later ones are refused (409). |pips| is at most MAX_ABS_PIPS (checked
here and by a CHECK constraint); an admin may correct a recorded outcome, which keeps its first recording
time and sets corrected_at.
"""

from __future__ import annotations

import math
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from sqlalchemy.exc import IntegrityError

from experiments import validation as v
from experiments.base import Database
from experiments.definitions import experiment_row
from experiments.errors import Conflict, Invalid, KeyReused, NotFound
from experiments.purge import delete_in_batches
from experiments.recording import Result, Served, bar_columns, record_all
from experiments.records import iso, outcome_dict, prediction_dict, utcnow
from experiments.schema import outcomes, predictions

OUTCOME_GRACE = timedelta(hours=24)
_PIPS_TOLERANCE = 1e-9


class PredictionLog(Database):
    """The predictions and outcomes tables: what each variant served and what it earned."""

    def record_prediction(
        self,
        experiment_id: str,
        user_id: str,
        variant: str,
        model_version: str,
        signal: str,
        confidence: float,
        stage1_prob: float | None = None,
        stage2_prob: float | None = None,
        idempotency_key: str | None = None,
        bar: tuple[str, str, datetime] | None = None,
    ) -> str:
        """Persist a prediction served under the (active) experiment; returns its prediction_id.

        bar: (pair, timeframe, bar time) the prediction is about; its market outcome is that bar's resolution.

        With an idempotency key, a retry (same key, same experiment and user) returns the first
        prediction's id instead of counting twice; the same key for another user is a Conflict.
        """
        key = v.check_idempotency_key(idempotency_key)
        if key is not None:
            found = self._by_idempotency_key(key, experiment_id, user_id)
            if found is not None:
                return found
        values = {
            "prediction_id": str(uuid.uuid4()),
            "experiment_id": v.check_id(experiment_id),
            "user_id": v.check_user_id(user_id),
            "variant": v.check_variant(variant),
            "model_version": v.check_version(model_version, "model_version"),
            "signal": v.check_signal(signal),
            "confidence": v.check_probability(confidence, "confidence"),
            "stage1_prob": v.check_probability(stage1_prob, "stage1_prob", required=False),
            "stage2_prob": v.check_probability(stage2_prob, "stage2_prob", required=False),
            "created_at": utcnow(),
            "idempotency_key": key,
            **bar_columns(bar),
        }
        try:
            self._insert_prediction(values, experiment_id, variant, model_version)
        except IntegrityError:
            found = self._by_idempotency_key(key, experiment_id, user_id) if key else None
            if found is None:
                raise
            return found  # a concurrent retry with the same key won the insert
        return str(values["prediction_id"])

    def record_predictions(self, items: list[Served], abandoned: threading.Event | None = None) -> list[Result]:
        """Record many served predictions in one transaction (experiments/recording.py); nothing once abandoned."""
        return record_all(self.write, items, abandoned)

    def _by_idempotency_key(self, key: str, experiment_id: str, user_id: str) -> str | None:
        """The prediction recorded earlier under this key, or None."""
        with self._read() as conn:
            row = conn.execute(select(predictions).where(predictions.c.idempotency_key == key)).first()
        if row is None:
            return None
        if row.experiment_id != experiment_id or row.user_id != user_id:
            raise KeyReused("Idempotency-Key was already used for another request; send a new key per request")
        return str(row.prediction_id)

    def _insert_prediction(self, values: dict[str, Any], experiment_id: str, variant: str, model_version: str) -> None:
        with self._write() as conn:
            row = experiment_row(conn, experiment_id, lock=True)
            if row.status != "active":
                raise Conflict(f"experiment {experiment_id!r} is not active (status {row.status!r})")
            expected = row.variant_a if variant == "A" else row.variant_b
            if model_version != expected:
                raise Invalid(f"variant {variant} of {experiment_id!r} is {expected!r}, not {model_version!r}")
            conn.execute(predictions.insert().values(**values))

    def record_outcome(self, prediction_id: str, pips: float) -> dict[str, Any]:
        """Record the realized pips of a prediction; same pips again is a no-op, different is Conflict."""
        value = v.check_pips(pips)
        if not isinstance(prediction_id, str):
            raise Invalid("prediction_id must be a string")
        try:
            with self._write() as conn:
                return _put_outcome(conn, prediction_id, value)
        except IntegrityError:  # a concurrent writer inserted first (PostgreSQL): compare with it
            with self._write() as conn:
                return _put_outcome(conn, prediction_id, value)

    def correct_outcome(self, prediction_id: str, pips: float) -> dict[str, Any]:
        """Admin: replace a recorded outcome (NotFound when there is none to correct)."""
        value = v.check_pips(pips)
        with self._write() as conn:
            pred = _prediction(conn, prediction_id)
            old = conn.execute(select(outcomes).where(outcomes.c.prediction_id == prediction_id)).first()
            if old is None:
                raise NotFound(f"prediction {prediction_id!r} has no outcome to correct")
            now = utcnow()
            conn.execute(
                update(outcomes).where(outcomes.c.prediction_id == prediction_id).values(pips=value, corrected_at=now)
            )
            return outcome_dict(pred, value, old.recorded_at, created=False) | {"corrected_at": iso(now)}

    def get_prediction(self, prediction_id: str) -> dict[str, Any]:
        """A recorded prediction (with its outcome pips or None) or NotFound."""
        stmt = (
            select(predictions, outcomes.c.pips)
            .select_from(predictions.outerjoin(outcomes))
            .where(predictions.c.prediction_id == prediction_id)
        )
        with self._read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"prediction {prediction_id!r} not found")
        return prediction_dict(row)

    # -- retention and erasure ---------------------------------------------------------------

    def purge_predictions(self, older_than: timedelta) -> int:
        """Delete predictions (and their outcomes) recorded before now - older_than; returns how many."""
        cutoff: datetime = utcnow() - older_than
        return delete_in_batches(self._write, predictions, predictions.c.created_at < cutoff)

    def delete_user(self, user_id: str) -> int:
        """Delete every stored prediction (and outcome) of one user; returns how many."""
        user = v.check_user_id(user_id)
        with self._write() as conn:
            return int(conn.execute(delete(predictions).where(predictions.c.user_id == user)).rowcount or 0)


def _put_outcome(conn: Connection, prediction_id: str, pips: float) -> dict[str, Any]:
    """Insert or compare with the existing outcome inside a write transaction."""
    pred = _prediction(conn, prediction_id)
    old = conn.execute(select(outcomes).where(outcomes.c.prediction_id == prediction_id)).first()
    if old is not None:
        if not math.isclose(old.pips, pips, rel_tol=0.0, abs_tol=_PIPS_TOLERANCE):
            raise Conflict(f"prediction {prediction_id!r} already has an outcome of {old.pips} pips")
        return outcome_dict(pred, old.pips, old.recorded_at, created=False)
    _check_open(experiment_row(conn, pred.experiment_id))
    now = utcnow()
    conn.execute(outcomes.insert().values(prediction_id=prediction_id, pips=pips, recorded_at=now))
    return outcome_dict(pred, pips, now, created=True)


def _prediction(conn: Connection, prediction_id: str) -> Row[Any]:
    pred = conn.execute(select(predictions).where(predictions.c.prediction_id == prediction_id)).first()
    if pred is None:
        raise NotFound(f"prediction {prediction_id!r} not found")
    return pred


def _check_open(experiment: Row[Any]) -> None:
    """Outcomes are taken while the experiment is active and for OUTCOME_GRACE after its stop."""
    stopped = experiment.stopped_at
    if stopped is None:
        return
    if stopped.tzinfo is None:  # SQLite gives naive UTC
        stopped = stopped.replace(tzinfo=utcnow().tzinfo)
    if utcnow() - stopped > OUTCOME_GRACE:
        hours = OUTCOME_GRACE.total_seconds() / 3600
        raise Conflict(
            f"experiment {experiment.experiment_id!r} stopped at {iso(stopped)}; outcomes are accepted "
            f"for {hours:g} h after the stop"
        )
