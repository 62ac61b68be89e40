"""Promotion policy (issue 13): one policy per challenger against the active version with its probation
state, the audit trail of recommendations, switches, rollbacks and confirmations, and the lease that
lets one worker across replicas act.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
MAX_POLICY_R = 1_000_000  # experiments.schema.MAX_POLICY_R when this revision was written
MAX_PROBATION_BARS = 100_000_000


def upgrade() -> None:
    op.create_table(
        "promotion_policy",
        sa.Column("challenger", sa.String(64), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("min_effect_r", sa.Float, nullable=False),
        sa.Column("max_drawdown_r", sa.Float, nullable=False),
        sa.Column("probation_bars", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("probation_from_version", sa.String(64)),
        sa.Column("probation_started_at", TS),
        sa.Column("probation_start_bar", TS),
        sa.CheckConstraint("mode IN ('off', 'recommend', 'auto')", name="ck_promotion_policy_mode"),
        sa.CheckConstraint(
            f"min_effect_r > 0 AND min_effect_r <= {MAX_POLICY_R}", name="ck_promotion_policy_min_effect"
        ),
        sa.CheckConstraint(
            f"max_drawdown_r > 0 AND max_drawdown_r <= {MAX_POLICY_R}", name="ck_promotion_policy_max_drawdown"
        ),
        sa.CheckConstraint(
            f"probation_bars >= 0 AND probation_bars <= {MAX_PROBATION_BARS}",
            name="ck_promotion_policy_probation_bars",
        ),
        sa.CheckConstraint(
            "(probation_from_version IS NULL AND probation_started_at IS NULL AND probation_start_bar IS NULL)"
            " OR (probation_from_version IS NOT NULL AND probation_started_at IS NOT NULL"
            " AND probation_start_bar IS NOT NULL AND probation_from_version <> challenger)",
            name="ck_promotion_policy_probation",
        ),
    )
    op.create_table(
        "promotion_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("challenger", sa.String(64), nullable=False),
        sa.Column("incumbent", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
        sa.CheckConstraint(
            "action IN ('recommend', 'switch', 'rollback', 'confirm')", name="ck_promotion_decisions_action"
        ),
        sa.CheckConstraint("mode IN ('off', 'recommend', 'auto')", name="ck_promotion_decisions_mode"),
    )
    op.create_index("ix_promotion_decisions_at", "promotion_decisions", ["at"])
    op.create_index("ix_promotion_decisions_challenger", "promotion_decisions", ["challenger", "at"])
    op.create_table(
        "promotion_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.CheckConstraint("expires_at > acquired_at", name="ck_promotion_lease_expiry"),
    )


def downgrade() -> None:
    for table in ("promotion_lease", "promotion_decisions", "promotion_policy"):
        op.drop_table(table)  # their indexes and constraints go with them
