"""Durable experiment store (SQLAlchemy 2 Core): SQLite file by default, PostgreSQL by URL.

Safe from several threads (one pooled engine) and several processes (the database enforces the
invariants: primary keys, the partial unique index on the active experiment, and IMMEDIATE write
transactions on SQLite). Every write is committed before the method returns.

Creating a store opens no connection: the schema is checked (or, with auto_migrate, brought up to
date by the Alembic migrations) on first use, so a process starts while its database is down.

Rules:
- a new experiment gets a random secret salt (assignment cannot be computed from its id);
- outcomes are accepted while the experiment is active and for OUTCOME_GRACE after it stopped
  (trades opened just before the stop still close); later ones are refused (409);
- |pips| is at most MAX_ABS_PIPS (checked here and by a CHECK constraint); an admin may correct
  a recorded outcome, which keeps its first recording time and sets corrected_at.
"""

from __future__ import annotations

import math
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from experiments import validation as v
from experiments.db import WRITE_OPTION, DatabaseOptions, default_database_url, is_sqlite, make_engine
from experiments.errors import Conflict, Invalid, KeyReused, NotFound
from experiments.metrics import experiment_metrics, user_counts
from experiments.purge import delete_in_batches
from experiments.recording import Result, Served, bar_columns, record_all
from experiments.records import experiment_dict, iso, outcome_dict, prediction_dict, utcnow
from experiments.schema import experiments, outcomes, predictions, settings

ACTIVE_VERSION_KEY = "active_version"
OUTCOME_GRACE = timedelta(hours=24)
_PIPS_TOLERANCE = 1e-9


class ExperimentStore:
    """Experiments, predictions served under them, their outcomes, and service settings."""

    def __init__(
        self, url: str | None = None, auto_migrate: bool = True, options: DatabaseOptions | None = None
    ) -> None:
        self.url = url or default_database_url()
        self.auto_migrate = auto_migrate
        self._engine = make_engine(self.url, options)
        self._pid = os.getpid()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._attempts = 0  # schema attempts so far, and the error of the last one that failed
        self._failure: Exception | None = None

    # -- connections -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's engine (a forked child drops the parent's pooled connections)."""
        if os.getpid() != self._pid:
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        return self._engine

    def ensure_schema(self) -> None:
        """Migrate (auto_migrate) or check the schema, once per store; retried after a failure.

        A thread that waited while another attempt failed gets that failure at once instead of
        queueing its own attempt: with a database that does not answer, each attempt costs the
        connect timeout, and callers (requests, the write-behind queue, the resolver) would wait in line.
        """
        if self._ready:
            return
        from experiments import migrate  # Alembic, loaded only by a process that uses the database

        seen = self._attempts
        with self._ready_lock:
            if self._ready:
                return
            if self._attempts != seen and self._failure is not None:
                raise self._failure.with_traceback(None)
            try:
                if self.auto_migrate:
                    migrate.upgrade(self.engine)
                else:
                    migrate.check(self.engine)
            except Exception as exc:
                self._failure = exc
                raise
            finally:
                self._attempts += 1
            self._ready, self._failure = True, None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (for the package's own modules, e.g. experiments/recording.py)."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (BEGIN IMMEDIATE on SQLite)."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; snapshot=True gives one consistent view on PostgreSQL too."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            if snapshot and not is_sqlite(self._engine):
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def schema_version(self) -> str | None:
        """The Alembic revision recorded in the database."""
        with self._read() as conn:
            from experiments.migrate import current

            return current(conn)

    # -- experiments -------------------------------------------------------------------------

    @staticmethod
    def _row(conn: Connection, experiment_id: str, lock: bool = False) -> Row[Any]:
        """The experiments row or NotFound (lock=True: FOR SHARE on PostgreSQL)."""
        stmt = select(experiments).where(experiments.c.experiment_id == experiment_id)
        if lock:
            stmt = stmt.with_for_update(read=True)
        row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"experiment {experiment_id!r} not found")
        return row

    def create_experiment(
        self,
        experiment_id: str,
        name: str,
        description: str | None,
        variant_a: str,
        variant_b: str,
        traffic_split: float = 0.5,
        salt: str | None = None,
    ) -> dict[str, Any]:
        """Create an experiment in status 'created'; salt defaults to a random secret."""
        values = {
            "experiment_id": v.check_id(experiment_id),
            "name": v.check_text(name, "name", v.NAME_LEN, required=True),
            "description": v.check_text(description, "description", v.DESCRIPTION_LEN, required=False),
            "variant_a": v.check_version(variant_a, "variant_a"),
            "variant_b": v.check_version(variant_b, "variant_b"),
            "traffic_split": v.check_split(traffic_split),
            "salt": v.check_id(secrets.token_hex(16) if salt is None else salt, "salt"),
            "status": "created",
            "created_at": utcnow(),
        }
        if variant_a == variant_b:
            raise Invalid("variant_a and variant_b must be different model versions")
        try:
            with self._write() as conn:
                exists = conn.execute(
                    select(experiments.c.experiment_id).where(experiments.c.experiment_id == experiment_id)
                ).first()
                if exists is None:
                    conn.execute(experiments.insert().values(**values))
                    return experiment_dict(self._row(conn, experiment_id))
        except IntegrityError:
            pass  # lost a race with an identical id
        raise Conflict(f"experiment {experiment_id!r} already exists")

    def activate_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Make the experiment the one active experiment; idempotent when it already is."""
        try:
            with self._write() as conn:
                row = self._row(conn, experiment_id)
                if row.status == "active":
                    return experiment_dict(row)
                if row.status == "stopped":
                    raise Conflict(f"experiment {experiment_id!r} is stopped; create a new experiment")
                other = conn.execute(
                    select(experiments.c.experiment_id).where(experiments.c.status == "active")
                ).scalar()
                if other is not None:
                    raise Conflict(f"experiment {other!r} is already active; stop it first")
                conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == experiment_id)
                    .values(status="active", activated_at=utcnow())
                )
                return experiment_dict(self._row(conn, experiment_id))
        except IntegrityError as exc:  # the partial unique index caught a concurrent activation
            raise Conflict("another experiment was activated concurrently; stop it first") from exc

    def stop_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Stop the active experiment (Conflict when it is not active)."""
        with self._write() as conn:
            row = self._row(conn, experiment_id)
            if row.status != "active":
                raise Conflict(f"experiment {experiment_id!r} is not active (status {row.status!r})")
            conn.execute(
                update(experiments)
                .where(experiments.c.experiment_id == experiment_id)
                .values(status="stopped", stopped_at=utcnow())
            )
            return experiment_dict(self._row(conn, experiment_id))

    def active_experiment(self) -> dict[str, Any] | None:
        """The active experiment or None (one select on the partial unique index)."""
        with self._read() as conn:
            row = conn.execute(select(experiments).where(experiments.c.status == "active")).first()
        return experiment_dict(row) if row is not None else None

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment or NotFound."""
        with self._read() as conn:
            return experiment_dict(self._row(conn, experiment_id))

    def list_experiments(self) -> list[dict[str, Any]]:
        """All experiments, oldest first."""
        stmt = select(experiments).order_by(experiments.c.created_at, experiments.c.experiment_id)
        with self._read() as conn:
            return [experiment_dict(r) for r in conn.execute(stmt)]

    def metrics(self, experiment_id: str, min_samples: int = 30, alpha: float = 0.05) -> dict[str, Any]:
        """Seed-shaped metrics per variant plus outcome statistics, from one consistent snapshot."""
        with self._read(snapshot=True) as conn:
            exp = experiment_dict(self._row(conn, experiment_id))
            return experiment_metrics(conn, exp, min_samples, alpha)

    def variant_users(self, experiment_id: str) -> tuple[dict[str, Any], dict[str, int]]:
        """An experiment and its distinct users per variant (the sample-ratio-mismatch check's input)."""
        with self._read(snapshot=True) as conn:
            return experiment_dict(self._row(conn, experiment_id)), user_counts(conn, experiment_id)

    # -- predictions and outcomes ------------------------------------------------------------

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
            row = self._row(conn, experiment_id, lock=True)
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
                return self._put_outcome(conn, prediction_id, value)
        except IntegrityError:  # a concurrent writer inserted first (PostgreSQL): compare with it
            with self._write() as conn:
                return self._put_outcome(conn, prediction_id, value)

    @classmethod
    def _put_outcome(cls, conn: Connection, prediction_id: str, pips: float) -> dict[str, Any]:
        """Insert or compare with the existing outcome inside a write transaction."""
        pred = cls._prediction(conn, prediction_id)
        old = conn.execute(select(outcomes).where(outcomes.c.prediction_id == prediction_id)).first()
        if old is not None:
            if not math.isclose(old.pips, pips, rel_tol=0.0, abs_tol=_PIPS_TOLERANCE):
                raise Conflict(f"prediction {prediction_id!r} already has an outcome of {old.pips} pips")
            return outcome_dict(pred, old.pips, old.recorded_at, created=False)
        _check_open(cls._row(conn, pred.experiment_id))
        now = utcnow()
        conn.execute(outcomes.insert().values(prediction_id=prediction_id, pips=pips, recorded_at=now))
        return outcome_dict(pred, pips, now, created=True)

    @staticmethod
    def _prediction(conn: Connection, prediction_id: str) -> Row[Any]:
        pred = conn.execute(select(predictions).where(predictions.c.prediction_id == prediction_id)).first()
        if pred is None:
            raise NotFound(f"prediction {prediction_id!r} not found")
        return pred

    def correct_outcome(self, prediction_id: str, pips: float) -> dict[str, Any]:
        """Admin: replace a recorded outcome (NotFound when there is none to correct)."""
        value = v.check_pips(pips)
        with self._write() as conn:
            pred = self._prediction(conn, prediction_id)
            old = conn.execute(select(outcomes).where(outcomes.c.prediction_id == prediction_id)).first()
            if old is None:
                raise NotFound(f"prediction {prediction_id!r} has no outcome to correct")
            now = utcnow()
            conn.execute(
                update(outcomes).where(outcomes.c.prediction_id == prediction_id).values(pips=value, corrected_at=now)
            )
            return outcome_dict(pred, value, old.recorded_at, created=False) | {"corrected_at": iso(now)}

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

    # -- settings ----------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        """A settings value or None (primary-key lookup)."""
        with self._read() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()

    def set_setting(self, key: str, value: str) -> None:
        """Upsert a settings value (committed before returning)."""
        stmt = self._setting_upsert(key, value)
        with self._write() as conn:
            conn.execute(stmt)

    def _setting_upsert(self, key: str, value: str) -> Any:
        """The checked upsert of a settings value."""
        v.check_id(key, "settings key")
        if not isinstance(value, str):
            raise Invalid("settings value must be a string")
        insert = sqlite_insert if is_sqlite(self._engine) else pg_insert
        now = utcnow()
        stmt = insert(settings).values(key=key, value=value, updated_at=now)
        return stmt.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value, "updated_at": now})

    def get_active_version(self) -> str | None:
        """The service's active model version (shared by every worker), or None if never set."""
        return self.get_setting(ACTIVE_VERSION_KEY)

    def set_active_version(self, version: str) -> None:
        """Persist the service's active model version."""
        self.set_setting(ACTIVE_VERSION_KEY, v.check_version(version, "version"))

    def put_active_version(self, conn: Connection, version: str) -> None:
        """Set the service's active model version inside the caller's write transaction (committed with it)."""
        conn.execute(self._setting_upsert(ACTIVE_VERSION_KEY, v.check_version(version, "version")))


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
