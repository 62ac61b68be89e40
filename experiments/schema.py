"""Tables of the experiment store (SQLAlchemy Core, portable between SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# Bump when the tables change and add a migration step in store.py (_ensure_schema).
SCHEMA_VERSION = 1
ID_LEN = 64
USER_ID_LEN = 256
STATUSES = ("created", "active", "stopped")
SIGNALS = ("long", "short", "hold")

metadata = MetaData()

schema_version = Table(
    "aifx_schema_version",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one row
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", String(ID_LEN), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("variant_a", String(ID_LEN), nullable=False),
    Column("variant_b", String(ID_LEN), nullable=False),
    Column("traffic_split", Float, nullable=False),
    Column("salt", String(ID_LEN), nullable=False),
    Column("status", String(16), nullable=False, default="created"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("activated_at", DateTime(timezone=True)),
    Column("stopped_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('created', 'active', 'stopped')", name="ck_experiments_status"),
    CheckConstraint("traffic_split > 0 AND traffic_split < 1", name="ck_experiments_split"),
    CheckConstraint("variant_a <> variant_b", name="ck_experiments_variants"),
)

# At most one active experiment, enforced by the database itself (race-safe across processes).
Index(
    "uq_experiments_one_active",
    experiments.c.status,
    unique=True,
    sqlite_where=text("status = 'active'"),
    postgresql_where=text("status = 'active'"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("prediction_id", String(36), primary_key=True),
    Column(
        "experiment_id",
        String(ID_LEN),
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", String(USER_ID_LEN), nullable=False),
    Column("variant", String(1), nullable=False),
    Column("model_version", String(ID_LEN), nullable=False),
    Column("signal", String(8), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("stage1_prob", Float),
    Column("stage2_prob", Float),
    Column("created_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("variant IN ('A', 'B')", name="ck_predictions_variant"),
    CheckConstraint("signal IN ('long', 'short', 'hold')", name="ck_predictions_signal"),
)
Index("ix_predictions_experiment_variant", predictions.c.experiment_id, predictions.c.variant)

outcomes = Table(
    "outcomes",
    metadata,
    Column(
        "prediction_id",
        String(36),
        ForeignKey("predictions.prediction_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("pips", Float, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
