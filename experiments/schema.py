"""Tables of the experiment store (SQLAlchemy Core, portable between SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    text,
)

# The Alembic head these tables match (experiments/migrations/versions); change both together.
SCHEMA_VERSION = "0002"
ID_LEN = 64
IDEMPOTENCY_KEY_LEN = 128
MAX_ABS_PIPS = 10_000  # a bigger |pips| is no realized result (the API and a CHECK refuse it)
USER_ID_LEN = 256
STATUSES = ("created", "active", "stopped")
SIGNALS = ("long", "short", "hold")

metadata = MetaData()

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
    Column("idempotency_key", String(IDEMPOTENCY_KEY_LEN)),
    CheckConstraint("variant IN ('A', 'B')", name="ck_predictions_variant"),
    CheckConstraint("signal IN ('long', 'short', 'hold')", name="ck_predictions_signal"),
)
Index("ix_predictions_experiment_variant", predictions.c.experiment_id, predictions.c.variant)
Index("ix_predictions_user", predictions.c.user_id)
Index("ix_predictions_created", predictions.c.created_at)
# A client retry with the same Idempotency-Key finds the first prediction instead of counting twice.
Index(
    "uq_predictions_idempotency_key",
    predictions.c.idempotency_key,
    unique=True,
    sqlite_where=text("idempotency_key IS NOT NULL"),
    postgresql_where=text("idempotency_key IS NOT NULL"),
)

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
    Column("corrected_at", DateTime(timezone=True)),
    CheckConstraint(f"pips >= -{MAX_ABS_PIPS} AND pips <= {MAX_ABS_PIPS}", name="ck_outcomes_pips"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
