"""Durable experiment store (SQLAlchemy 2 Core): SQLite file by default, PostgreSQL by URL.

Safe from several threads (one pooled engine) and several processes (the database enforces the
invariants: primary keys, the partial unique index on the active experiment, and IMMEDIATE write
transactions on SQLite). Every write is committed before the method returns.

Creating a store opens no connection: the schema is checked (or, with auto_migrate, brought up to
date by the Alembic migrations) on first use, so a process starts while its database is down.

A new experiment gets a random secret salt (assignment cannot be computed from its id); the rules of
outcomes (OUTCOME_GRACE after the stop, bounded pips, admin corrections) are in experiments/predictions.py.

The store is its parts, each over the one `Database` (experiments/base.py: engine, schema check,
transactions): experiments/definitions.py (experiments), experiments/predictions.py (predictions and
outcomes), experiments/service_settings.py (settings and the active version).
"""

from __future__ import annotations

from experiments.definitions import ExperimentDefinitions
from experiments.predictions import OUTCOME_GRACE, PredictionLog
from experiments.service_settings import ACTIVE_VERSION_KEY, ServiceSettings

__all__ = ["ACTIVE_VERSION_KEY", "OUTCOME_GRACE", "ExperimentStore"]


class ExperimentStore(ExperimentDefinitions, PredictionLog, ServiceSettings):
    """Experiments, predictions served under them, their outcomes, and service settings."""
