"""A/B experiments between model versions (assignment, persistence, metrics, outcome statistics) and the
evaluation log (every version's decision per bar, trusted candles, outcomes) with its write-behind queue, and
promotion policies with their audit trail."""

from experiments.anchors import AnchorStore
from experiments.assignment import BUCKETS, assign_variant, bucket
from experiments.db import DEFAULT_DATABASE_URL, ENV_DATABASE_URL, default_database_url
from experiments.errors import Conflict, ExperimentError, Invalid, KeyReused, NotFound, SchemaMismatch
from experiments.evaluation import EvaluationStore
from experiments.framework import ABTestingFramework, Assignment, assignment_for
from experiments.promotion import PromotionStore
from experiments.recording import Abandoned, Served
from experiments.records import BarLog, Candle, CandleSeries, Decision, PendingBar, Resolution, StoredDecision
from experiments.schema import SCHEMA_VERSION
from experiments.srm_flags import SrmStore
from experiments.stats import compare, two_proportion_z_test, welch_t_test
from experiments.store import ACTIVE_VERSION_KEY, ExperimentStore
from experiments.writebehind import WriteBehind

__all__ = [
    "Abandoned",
    "Served",
    "ABTestingFramework",
    "ACTIVE_VERSION_KEY",
    "AnchorStore",
    "Assignment",
    "BUCKETS",
    "BarLog",
    "Candle",
    "CandleSeries",
    "Conflict",
    "DEFAULT_DATABASE_URL",
    "Decision",
    "ENV_DATABASE_URL",
    "EvaluationStore",
    "ExperimentError",
    "ExperimentStore",
    "Invalid",
    "KeyReused",
    "NotFound",
    "PendingBar",
    "PromotionStore",
    "Resolution",
    "SCHEMA_VERSION",
    "SchemaMismatch",
    "SrmStore",
    "StoredDecision",
    "WriteBehind",
    "assign_variant",
    "assignment_for",
    "bucket",
    "compare",
    "default_database_url",
    "two_proportion_z_test",
    "welch_t_test",
]
