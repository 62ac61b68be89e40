"""Experiments themselves: create, activate (one active at a time), stop, read, and their metrics.

The partial unique index on status = 'active' holds the one-active rule when two processes activate at once.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from experiments import validation as v
from experiments.base import Database
from experiments.errors import Conflict, Invalid, NotFound
from experiments.metrics import experiment_metrics, user_counts
from experiments.records import experiment_dict, utcnow
from experiments.schema import experiments


class ExperimentDefinitions(Database):
    """The experiments table: an experiment's life (created, active, stopped) and its figures."""

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
                    return experiment_dict(experiment_row(conn, experiment_id))
        except IntegrityError:
            pass  # lost a race with an identical id
        raise Conflict(f"experiment {experiment_id!r} already exists")

    def activate_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Make the experiment the one active experiment; idempotent when it already is."""
        try:
            with self._write() as conn:
                row = experiment_row(conn, experiment_id)
                if row.status == "active":
                    return experiment_dict(row)
                if row.status == "stopped":
                    raise Conflict(f"experiment {experiment_id!r} is stopped; create a new experiment")
                other = conn.execute(
                    select(experiments.c.experiment_id).where(experiments.c.status == "active")
                ).scalar()
                if other is not None:
                    raise Conflict(f"experiment {other!r} is already active; stop it first")
                return _update(conn, experiment_id, status="active", activated_at=utcnow())
        except IntegrityError as exc:  # the partial unique index caught a concurrent activation
            raise Conflict("another experiment was activated concurrently; stop it first") from exc

    def stop_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Stop the active experiment (Conflict when it is not active)."""
        with self._write() as conn:
            row = experiment_row(conn, experiment_id)
            if row.status != "active":
                raise Conflict(f"experiment {experiment_id!r} is not active (status {row.status!r})")
            return _update(conn, experiment_id, status="stopped", stopped_at=utcnow())

    def active_experiment(self) -> dict[str, Any] | None:
        """The active experiment or None (one select on the partial unique index)."""
        with self._read() as conn:
            row = conn.execute(select(experiments).where(experiments.c.status == "active")).first()
        return experiment_dict(row) if row is not None else None

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment or NotFound."""
        with self._read() as conn:
            return experiment_dict(experiment_row(conn, experiment_id))

    def list_experiments(self) -> list[dict[str, Any]]:
        """All experiments, oldest first."""
        stmt = select(experiments).order_by(experiments.c.created_at, experiments.c.experiment_id)
        with self._read() as conn:
            return [experiment_dict(r) for r in conn.execute(stmt)]

    def metrics(self, experiment_id: str, min_samples: int = 30, alpha: float = 0.05) -> dict[str, Any]:
        """Seed-shaped metrics per variant plus outcome statistics, from one consistent snapshot."""
        with self._read(snapshot=True) as conn:
            exp = experiment_dict(experiment_row(conn, experiment_id))
            return experiment_metrics(conn, exp, min_samples, alpha)

    def variant_users(self, experiment_id: str) -> tuple[dict[str, Any], dict[str, int]]:
        """An experiment and its distinct users per variant (the sample-ratio-mismatch check's input)."""
        with self._read(snapshot=True) as conn:
            return experiment_dict(experiment_row(conn, experiment_id)), user_counts(conn, experiment_id)


def experiment_row(conn: Connection, experiment_id: str, lock: bool = False) -> Row[Any]:
    """The experiments row or NotFound (lock=True: FOR SHARE on PostgreSQL)."""
    stmt = select(experiments).where(experiments.c.experiment_id == experiment_id)
    if lock:
        stmt = stmt.with_for_update(read=True)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"experiment {experiment_id!r} not found")
    return row


def _update(conn: Connection, experiment_id: str, **values: Any) -> dict[str, Any]:
    """Set columns of one experiment's row; returns the row as a dict."""
    conn.execute(update(experiments).where(experiments.c.experiment_id == experiment_id).values(**values))
    return experiment_dict(experiment_row(conn, experiment_id))
