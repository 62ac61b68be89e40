"""Durable experiment store (SQLAlchemy 2 Core): SQLite file by default, PostgreSQL by URL.

Safe from several threads (one pooled engine) and several processes (the database enforces the
invariants: primary keys, the partial unique index on the active experiment, and IMMEDIATE write
transactions on SQLite). Every write is committed before the method returns.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from experiments import validation as v
from experiments.db import WRITE_OPTION, default_database_url, is_sqlite, make_engine
from experiments.errors import Conflict, Invalid, NotFound, SchemaMismatch
from experiments.metrics import experiment_metrics
from experiments.records import experiment_dict, outcome_dict, prediction_dict, utcnow
from experiments.schema import (
    SCHEMA_VERSION,
    experiments,
    metadata,
    outcomes,
    predictions,
    schema_version,
    settings,
)

ACTIVE_VERSION_KEY = "active_version"
_SCHEMA_LOCK_KEY = 0x41494658  # "AIFX": serializes schema creation across processes on PostgreSQL
_PIPS_TOLERANCE = 1e-9


class ExperimentStore:
    """Experiments, predictions served under them, their outcomes, and service settings."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_database_url()
        self._engine = make_engine(self.url)
        self._pid = os.getpid()
        try:
            self._ensure_schema()
        except BaseException:
            self._engine.dispose()
            raise

    # -- connections -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """This process's engine (a forked child drops the parent's pooled connections)."""
        if os.getpid() != self._pid:
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        return self._engine

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (BEGIN IMMEDIATE on SQLite)."""
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; snapshot=True gives one consistent view on PostgreSQL too."""
        with self.engine.connect() as conn:
            if snapshot and not is_sqlite(self._engine):
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Create missing tables and record/check the schema version, once across processes."""
        with self._write() as conn:
            if not is_sqlite(self._engine):
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
            metadata.create_all(conn)
            found = conn.execute(select(schema_version.c.version)).scalar()
            if found is None:
                conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION, updated_at=utcnow()))
            elif found != SCHEMA_VERSION:
                raise SchemaMismatch(f"database schema version {found}, this code uses {SCHEMA_VERSION}; migrate first")

    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._read() as conn:
            return int(conn.execute(select(schema_version.c.version)).scalar_one())

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
        """Create an experiment in status 'created'; salt defaults to the experiment id."""
        values = {
            "experiment_id": v.check_id(experiment_id),
            "name": v.check_text(name, "name", v.NAME_LEN, required=True),
            "description": v.check_text(description, "description", v.DESCRIPTION_LEN, required=False),
            "variant_a": v.check_version(variant_a, "variant_a"),
            "variant_b": v.check_version(variant_b, "variant_b"),
            "traffic_split": v.check_split(traffic_split),
            "salt": v.check_id(experiment_id if salt is None else salt, "salt"),
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
    ) -> str:
        """Persist a prediction served under the (active) experiment; returns its prediction_id."""
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
        }
        with self._write() as conn:
            row = self._row(conn, experiment_id, lock=True)
            if row.status != "active":
                raise Conflict(f"experiment {experiment_id!r} is not active (status {row.status!r})")
            expected = row.variant_a if variant == "A" else row.variant_b
            if model_version != expected:
                raise Invalid(f"variant {variant} of {experiment_id!r} is {expected!r}, not {model_version!r}")
            conn.execute(predictions.insert().values(**values))
        return str(values["prediction_id"])

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

    @staticmethod
    def _put_outcome(conn: Connection, prediction_id: str, pips: float) -> dict[str, Any]:
        """Insert or compare with the existing outcome inside a write transaction."""
        pred = conn.execute(select(predictions).where(predictions.c.prediction_id == prediction_id)).first()
        if pred is None:
            raise NotFound(f"prediction {prediction_id!r} not found")
        old = conn.execute(select(outcomes).where(outcomes.c.prediction_id == prediction_id)).first()
        if old is not None:
            if not math.isclose(old.pips, pips, rel_tol=0.0, abs_tol=_PIPS_TOLERANCE):
                raise Conflict(f"prediction {prediction_id!r} already has an outcome of {old.pips} pips")
            return outcome_dict(pred, old.pips, old.recorded_at, created=False)
        now = utcnow()
        conn.execute(outcomes.insert().values(prediction_id=prediction_id, pips=pips, recorded_at=now))
        return outcome_dict(pred, pips, now, created=True)

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
        v.check_id(key, "settings key")
        if not isinstance(value, str):
            raise Invalid("settings value must be a string")
        insert = sqlite_insert if is_sqlite(self._engine) else pg_insert
        now = utcnow()
        stmt = insert(settings).values(key=key, value=value, updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value, "updated_at": now})
        with self._write() as conn:
            conn.execute(stmt)

    def get_active_version(self) -> str | None:
        """The service's active model version (shared by every worker), or None if never set."""
        return self.get_setting(ACTIVE_VERSION_KEY)

    def set_active_version(self, version: str) -> None:
        """Persist the service's active model version."""
        self.set_setting(ACTIVE_VERSION_KEY, v.check_version(version, "version"))
