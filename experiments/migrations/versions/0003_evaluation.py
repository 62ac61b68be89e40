"""Evaluation log (bars, every version's decision on them), trusted market candles, and the bar of each
experiment prediction (its market outcome comes from the same resolution) (issue 12).

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from experiments.migrations.keep import outcomes_kept

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eval_bars",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pair", sa.String(16), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("bar_time", TS, nullable=False),
        sa.Column("entry", sa.Float, nullable=False),
        sa.Column("atr", sa.Float, nullable=False),
        sa.Column("pip", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS),
        sa.UniqueConstraint("pair", "timeframe", "bar_time", name="uq_eval_bars_bar"),
        sa.CheckConstraint("state IN ('pending', 'resolved', 'expired')", name="ck_eval_bars_state"),
        sa.CheckConstraint("entry > 0", name="ck_eval_bars_entry"),
        sa.CheckConstraint("atr > 0", name="ck_eval_bars_atr"),
        sa.CheckConstraint("pip > 0", name="ck_eval_bars_pip"),
    )
    op.create_index("ix_eval_bars_resolution", "eval_bars", ["state", "pair", "timeframe", "bar_time"])
    op.create_index("ix_eval_bars_created", "eval_bars", ["created_at"])
    op.create_table(
        "eval_decisions",
        sa.Column("bar_id", sa.Integer, sa.ForeignKey("eval_bars.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("signal", sa.String(8), nullable=False),
        sa.Column("p_reversal", sa.Float, nullable=False),
        sa.Column("p_long", sa.Float),
        sa.Column("served", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("result", sa.String(8)),
        sa.Column("pips", sa.Float),
        sa.Column("label_held", sa.Boolean),
        sa.CheckConstraint("signal IN ('long', 'short', 'hold')", name="ck_eval_decisions_signal"),
        sa.CheckConstraint("p_reversal >= 0 AND p_reversal <= 1", name="ck_eval_decisions_p_reversal"),
        sa.CheckConstraint("p_long >= 0 AND p_long <= 1", name="ck_eval_decisions_p_long"),
        sa.CheckConstraint("served >= 0", name="ck_eval_decisions_served"),
        sa.CheckConstraint("result IN ('hit', 'stop', 'timeout')", name="ck_eval_decisions_result"),
    )
    op.create_index("ix_eval_decisions_version", "eval_decisions", ["version", "bar_id"])
    op.create_table(
        "market_candles",
        sa.Column("pair", sa.String(16), primary_key=True),
        sa.Column("timeframe", sa.String(8), primary_key=True),
        sa.Column("ts", TS, primary_key=True),
        sa.Column("open", sa.Float, nullable=False),
        sa.Column("high", sa.Float, nullable=False),
        sa.Column("low", sa.Float, nullable=False),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.CheckConstraint(
            "high >= low AND high >= open AND high >= close AND low <= open AND low <= close",
            name="ck_market_candles_ohlc",
        ),
        sa.CheckConstraint("low > 0", name="ck_market_candles_positive"),
    )

    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("pair", sa.String(16)))
        batch.add_column(sa.Column("timeframe", sa.String(8)))
        batch.add_column(sa.Column("bar_time", TS))
    op.create_index("ix_predictions_bar", "predictions", ["pair", "timeframe", "bar_time"])
    op.create_index("ix_market_candles_received", "market_candles", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_predictions_bar", "predictions")
    with outcomes_kept(), op.batch_alter_table("predictions") as batch:  # the rebuild must not delete outcomes
        for column in ("bar_time", "timeframe", "pair"):
            batch.drop_column(column)
    for table in ("market_candles", "eval_decisions", "eval_bars"):
        op.drop_table(table)  # their indexes and constraints go with them
