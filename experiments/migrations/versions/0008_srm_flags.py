"""Sample-ratio-mismatch flags (issue 26): the first read at which an experiment's anytime-valid SRM test
flagged stands across restarts until an admin reset, which also records the users counted so far (the test
restarts from them). A table of its own: adding columns to `experiments` would rebuild it on SQLite to drop
them again, and that rebuild cascades to the predictions.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "srm_flags",
        sa.Column(
            "experiment_id",
            sa.String(64),
            sa.ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("flagged_at", TS),
        sa.Column("flag", sa.Text),
        sa.Column("baseline", sa.Text),
        sa.Column("reset_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("(flagged_at IS NULL) = (flag IS NULL)", name="ck_srm_flags_flag"),
        sa.CheckConstraint("(reset_at IS NULL) = (baseline IS NULL)", name="ck_srm_flags_reset"),
    )


def downgrade() -> None:
    op.drop_table("srm_flags")
