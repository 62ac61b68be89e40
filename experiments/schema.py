"""Tables of the experiment store (SQLAlchemy Core, portable between SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
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
    UniqueConstraint,
    text,
)

# The Alembic head these tables match (experiments/migrations/versions); change both together
# (tests/unit/test_store_evaluation.py compares the migrated database with these tables).
SCHEMA_VERSION = "0008"
ID_LEN = 64
IDEMPOTENCY_KEY_LEN = 128
NOTE_LEN = 200
MAX_ABS_PIPS = 10_000  # a bigger |pips| is no realized result (the API and a CHECK refuse it)
USER_ID_LEN = 256
STATUSES = ("created", "active", "stopped")
SIGNALS = ("long", "short", "hold")
PAIR_LEN = 16
TIMEFRAME_LEN = 8
TIMEFRAME_PATTERN = rf"^[A-Za-z0-9]{{1,{TIMEFRAME_LEN}}}$"  # the one timeframe pattern (log, queries, bodies)
SOURCE_LEN = 32
BAR_STATES = ("pending", "resolved", "expired")
RESULTS = ("hit", "stop", "timeout")
POLICY_MODES = ("off", "recommend", "auto")
DECISION_ACTIONS = ("recommend", "switch", "rollback", "confirm")
MAX_POLICY_R = 1_000_000  # min_effect_r and max_drawdown_r lie in (0, MAX_POLICY_R]: the bound also refuses NaN
MAX_PROBATION_BARS = 100_000_000
STATE_LEN = 64

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
    # The bar the prediction is about (when it came with candles): its market outcome is that bar's resolution.
    Column("pair", String(16)),
    Column("timeframe", String(8)),
    Column("bar_time", DateTime(timezone=True)),
    CheckConstraint("variant IN ('A', 'B')", name="ck_predictions_variant"),
    CheckConstraint("signal IN ('long', 'short', 'hold')", name="ck_predictions_signal"),
)
Index("ix_predictions_experiment_variant", predictions.c.experiment_id, predictions.c.variant)
Index("ix_predictions_bar", predictions.c.pair, predictions.c.timeframe, predictions.c.bar_time)
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

# -- evaluation log (migration 0003): every loaded version's decision on each bar, scored later --

eval_bars = Table(
    "eval_bars",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pair", String(PAIR_LEN), nullable=False),
    Column("timeframe", String(TIMEFRAME_LEN), nullable=False),
    Column("bar_time", DateTime(timezone=True), nullable=False),
    Column("entry", Float, nullable=False),
    Column("atr", Float, nullable=False),
    Column("pip", Float, nullable=False),
    Column("state", String(16), nullable=False, server_default=text("'pending'")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    # Why a bar could not be resolved (migration 0005): such a bar is 'expired' and counts as void.
    Column("note", String(NOTE_LEN)),
    UniqueConstraint("pair", "timeframe", "bar_time", name="uq_eval_bars_bar"),
    CheckConstraint("state IN ('pending', 'resolved', 'expired')", name="ck_eval_bars_state"),
    CheckConstraint("entry > 0", name="ck_eval_bars_entry"),
    CheckConstraint("atr > 0", name="ck_eval_bars_atr"),
    CheckConstraint("pip > 0", name="ck_eval_bars_pip"),
)
# The resolution query: pending bars of one pair and timeframe in bar_time order.
Index("ix_eval_bars_resolution", eval_bars.c.state, eval_bars.c.pair, eval_bars.c.timeframe, eval_bars.c.bar_time)
Index("ix_eval_bars_created", eval_bars.c.created_at)

eval_decisions = Table(
    "eval_decisions",
    metadata,
    Column("bar_id", Integer, ForeignKey("eval_bars.id", ondelete="CASCADE"), primary_key=True),
    Column("version", String(ID_LEN), primary_key=True),
    Column("signal", String(8), nullable=False),
    Column("p_reversal", Float, nullable=False),
    Column("p_long", Float),
    Column("served", Integer, nullable=False, server_default=text("0")),
    Column("result", String(8)),
    Column("pips", Float),
    Column("label_held", Boolean),
    CheckConstraint("signal IN ('long', 'short', 'hold')", name="ck_eval_decisions_signal"),
    CheckConstraint("p_reversal >= 0 AND p_reversal <= 1", name="ck_eval_decisions_p_reversal"),
    CheckConstraint("p_long >= 0 AND p_long <= 1", name="ck_eval_decisions_p_long"),
    CheckConstraint("served >= 0", name="ck_eval_decisions_served"),
    CheckConstraint("result IN ('hit', 'stop', 'timeout')", name="ck_eval_decisions_result"),
)
# Live figures and paired comparisons read one version's decisions.
Index("ix_eval_decisions_version", eval_decisions.c.version, eval_decisions.c.bar_id)

market_candles = Table(
    "market_candles",
    metadata,
    Column("pair", String(PAIR_LEN), primary_key=True),
    Column("timeframe", String(TIMEFRAME_LEN), primary_key=True),
    Column("ts", DateTime(timezone=True), primary_key=True),
    Column("open", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("low", Float, nullable=False),
    Column("close", Float, nullable=False),
    Column("source", String(SOURCE_LEN), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "high >= low AND high >= open AND high >= close AND low <= open AND low <= close",
        name="ck_market_candles_ohlc",
    ),
    CheckConstraint("low > 0", name="ck_market_candles_positive"),
)
# Retention deletes candles by arrival, not by market time (a replay of old data is recent).
Index("ix_market_candles_received", market_candles.c.received_at)

# -- promotion policy (migration 0004): a challenger against the active version, its audit trail --

# One row per challenger (several may be watched at once); the probation columns are set together by
# an automatic switch (the version it replaced, when, from which bar) and cleared by its end.
promotion_policy = Table(
    "promotion_policy",
    metadata,
    Column("challenger", String(ID_LEN), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("min_effect_r", Float, nullable=False),
    Column("max_drawdown_r", Float, nullable=False),
    Column("probation_bars", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("probation_from_version", String(ID_LEN)),
    Column("probation_started_at", DateTime(timezone=True)),
    Column("probation_start_bar", DateTime(timezone=True)),
    CheckConstraint("mode IN ('off', 'recommend', 'auto')", name="ck_promotion_policy_mode"),
    CheckConstraint(f"min_effect_r > 0 AND min_effect_r <= {MAX_POLICY_R}", name="ck_promotion_policy_min_effect"),
    CheckConstraint(
        f"max_drawdown_r > 0 AND max_drawdown_r <= {MAX_POLICY_R}", name="ck_promotion_policy_max_drawdown"
    ),
    CheckConstraint(
        f"probation_bars >= 0 AND probation_bars <= {MAX_PROBATION_BARS}", name="ck_promotion_policy_probation_bars"
    ),
    CheckConstraint(
        "(probation_from_version IS NULL AND probation_started_at IS NULL AND probation_start_bar IS NULL)"
        " OR (probation_from_version IS NOT NULL AND probation_started_at IS NOT NULL"
        " AND probation_start_bar IS NOT NULL AND probation_from_version <> challenger)",
        name="ck_promotion_policy_probation",
    ),
)

# Audit trail: every recommendation, switch, rollback and confirmation, with the figures behind it.
promotion_decisions = Table(
    "promotion_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("action", String(16), nullable=False),
    Column("challenger", String(ID_LEN), nullable=False),
    Column("incumbent", String(ID_LEN), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("state", String(STATE_LEN), nullable=False),
    Column("reason", Text, nullable=False),
    Column("figures", Text, nullable=False),  # a JSON object
    CheckConstraint("action IN ('recommend', 'switch', 'rollback', 'confirm')", name="ck_promotion_decisions_action"),
    CheckConstraint("mode IN ('off', 'recommend', 'auto')", name="ck_promotion_decisions_mode"),
)
Index("ix_promotion_decisions_at", promotion_decisions.c.at)
Index("ix_promotion_decisions_challenger", promotion_decisions.c.challenger, promotion_decisions.c.at)

# Leases: at most one holder per name across workers and replicas; an expired lease (a crashed
# holder) is taken over by the next caller.
promotion_lease = Table(
    "promotion_lease",
    metadata,
    Column("name", String(ID_LEN), primary_key=True),
    Column("holder", String(ID_LEN), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("expires_at > acquired_at", name="ck_promotion_lease_expiry"),
)

# -- anchored comparisons (migration 0006): running block sums from a fixed start, outside retention --

# One row per comparison (a, b, scope): the pure state of aifx.anchored as JSON, its alpha fixed at the
# start, the decision once reached (it stands until an admin reset starts the row anew), and the index
# of this anchor among its challenger's anchors (decisions_spent, the j of the alpha-spending rule).
comparison_anchors = Table(
    "comparison_anchors",
    metadata,
    Column("a", String(ID_LEN), primary_key=True),
    Column("b", String(ID_LEN), primary_key=True),
    Column("scope", String(ID_LEN), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("alpha", Float, nullable=False),
    Column("state", Text, nullable=False),  # a JSON object
    Column("decision", String(STATE_LEN)),
    Column("decided_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("decisions_spent", Integer, nullable=False),
    CheckConstraint("alpha > 0 AND alpha < 1", name="ck_comparison_anchors_alpha"),
    CheckConstraint("decisions_spent >= 0", name="ck_comparison_anchors_spent"),
    CheckConstraint("a <> b", name="ck_comparison_anchors_versions"),
    CheckConstraint("(decision IS NULL) = (decided_at IS NULL)", name="ck_comparison_anchors_decision"),
)
Index("ix_comparison_anchors_b", comparison_anchors.c.b)

# -- signal events (migration 0007): one event per bar that trusted candles close, streamed to subscribers --

signal_events = Table(
    "signal_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pair", String(PAIR_LEN), nullable=False),
    Column("timeframe", String(TIMEFRAME_LEN), nullable=False),
    Column("bar_time", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("pair", "timeframe", "bar_time", name="uq_signal_events_bar"),
)
# Replay after Last-Event-ID and the latest event read one series by id.
Index("ix_signal_events_series", signal_events.c.pair, signal_events.c.timeframe, signal_events.c.id)
Index("ix_signal_events_created", signal_events.c.created_at)

# -- sample-ratio-mismatch flags (migration 0008): the first flag of an experiment's SRM check stands --

srm_flags = Table(
    "srm_flags",
    metadata,
    Column(
        "experiment_id",
        String(ID_LEN),
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("flagged_at", DateTime(timezone=True)),  # the first read at which the e-value reached 1 / alpha
    Column("flag", Text),  # a JSON object: the check at that read (users, e-value, p-value, rule)
    Column("baseline", Text),  # a JSON object: users per variant at the last reset (the test counts beyond it)
    Column("reset_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("(flagged_at IS NULL) = (flag IS NULL)", name="ck_srm_flags_flag"),
    CheckConstraint("(reset_at IS NULL) = (baseline IS NULL)", name="ck_srm_flags_reset"),
)
