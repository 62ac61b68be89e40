"""Void bars (issue 25): a bar the resolver cannot resolve (no trusted candle of its own, an ATR too small
to scale R, a result out of bounds) is set aside with the reason in `note` instead of failing its batch.

Revision ID: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOTE_LEN = 200  # experiments.schema.NOTE_LEN when this revision was written


BEFORE = "logged before trusted-only logging (issue 25): its source and prices are unknown"


def upgrade() -> None:
    # A plain ADD COLUMN: no table is rebuilt, so SQLite's cascades never touch the decisions.
    op.add_column("eval_bars", sa.Column("note", sa.String(NOTE_LEN), nullable=True))
    # Pending bars may have come from anonymous requests with forged candles: none of them may still count.
    bars = sa.table("eval_bars", sa.column("state", sa.String), sa.column("note", sa.String))
    op.execute(bars.update().where(bars.c.state == "pending").values(state="expired", note=BEFORE))


def downgrade() -> None:
    op.drop_column("eval_bars", "note")
