"""The experiment store as created before migrations existed (legacy schema version 1).

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("experiment_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("variant_a", sa.String(64), nullable=False),
        sa.Column("variant_b", sa.String(64), nullable=False),
        sa.Column("traffic_split", sa.Float, nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("activated_at", TS),
        sa.Column("stopped_at", TS),
        sa.CheckConstraint("status IN ('created', 'active', 'stopped')", name="ck_experiments_status"),
        sa.CheckConstraint("traffic_split > 0 AND traffic_split < 1", name="ck_experiments_split"),
        sa.CheckConstraint("variant_a <> variant_b", name="ck_experiments_variants"),
    )
    op.create_index(
        "uq_experiments_one_active",
        "experiments",
        ["status"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "predictions",
        sa.Column("prediction_id", sa.String(36), primary_key=True),
        sa.Column(
            "experiment_id",
            sa.String(64),
            sa.ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("variant", sa.String(1), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("signal", sa.String(8), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("stage1_prob", sa.Float),
        sa.Column("stage2_prob", sa.Float),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("variant IN ('A', 'B')", name="ck_predictions_variant"),
        sa.CheckConstraint("signal IN ('long', 'short', 'hold')", name="ck_predictions_signal"),
    )
    op.create_index("ix_predictions_experiment_variant", "predictions", ["experiment_id", "variant"])
    op.create_table(
        "outcomes",
        sa.Column(
            "prediction_id",
            sa.String(36),
            sa.ForeignKey("predictions.prediction_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("pips", sa.Float, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("settings", "outcomes", "predictions", "experiments"):
        op.drop_table(table)
