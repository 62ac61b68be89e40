"""Bounded pips, outcome corrections, idempotency keys, retention and per-user deletion indexes.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from experiments.migrations.keep import outcomes_kept

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MAX_ABS_PIPS = 10_000  # experiments.schema.MAX_ABS_PIPS at the time of this migration


def upgrade() -> None:
    # An outcome beyond the bound was never a real result (10,000 pips is the whole EUR/USD price):
    # such rows were forged or broken, and they would make the constraint fail.
    op.execute(f"DELETE FROM outcomes WHERE NOT (pips >= -{MAX_ABS_PIPS} AND pips <= {MAX_ABS_PIPS})")
    with op.batch_alter_table("outcomes") as batch:
        batch.add_column(sa.Column("corrected_at", sa.DateTime(timezone=True)))
        batch.create_check_constraint("ck_outcomes_pips", f"pips >= -{MAX_ABS_PIPS} AND pips <= {MAX_ABS_PIPS}")
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(128)))
    op.create_index(
        "uq_predictions_idempotency_key",
        "predictions",
        ["idempotency_key"],
        unique=True,
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("ix_predictions_user", "predictions", ["user_id"])
    op.create_index("ix_predictions_created", "predictions", ["created_at"])
    op.execute("DROP TABLE IF EXISTS aifx_schema_version")  # replaced by alembic_version


def downgrade() -> None:
    op.drop_index("ix_predictions_created", "predictions")
    op.drop_index("ix_predictions_user", "predictions")
    op.drop_index("uq_predictions_idempotency_key", "predictions")
    with outcomes_kept(), op.batch_alter_table("predictions") as batch:  # the rebuild must not delete outcomes
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("outcomes") as batch:
        batch.drop_constraint("ck_outcomes_pips", type_="check")
        batch.drop_column("corrected_at")
