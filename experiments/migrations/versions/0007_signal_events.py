"""Signal events (issue 30): one event per bar that trusted candles close (the active version's answer and
every other version's decision), replayed after Last-Event-ID and streamed to subscribers on any worker.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signal_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("bar_time", TS, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("pair", "timeframe", "bar_time", name="uq_signal_events_bar"),
    )
    op.create_index("ix_signal_events_series", "signal_events", ["pair", "timeframe", "id"])
    op.create_index("ix_signal_events_created", "signal_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_signal_events_created", table_name="signal_events")
    op.drop_index("ix_signal_events_series", table_name="signal_events")
    op.drop_table("signal_events")
