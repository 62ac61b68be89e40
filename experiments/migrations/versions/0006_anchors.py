"""Anchored comparisons (issue 26): per (a, b, scope) the running block sums of the confidence sequence
from a fixed start, its alpha and the decision that stands; retention never deletes them.

Revision ID: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "comparison_anchors",
        sa.Column("a", sa.String(64), primary_key=True),
        sa.Column("b", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("alpha", sa.Float, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("decision", sa.String(64)),
        sa.Column("decided_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("decisions_spent", sa.Integer, nullable=False),
        sa.CheckConstraint("alpha > 0 AND alpha < 1", name="ck_comparison_anchors_alpha"),
        sa.CheckConstraint("decisions_spent >= 0", name="ck_comparison_anchors_spent"),
        sa.CheckConstraint("a <> b", name="ck_comparison_anchors_versions"),
        sa.CheckConstraint("(decision IS NULL) = (decided_at IS NULL)", name="ck_comparison_anchors_decision"),
    )
    op.create_index("ix_comparison_anchors_b", "comparison_anchors", ["b"])


def downgrade() -> None:
    op.drop_table("comparison_anchors")  # its index and constraints go with it
