"""A/B experiments between model versions (assignment, persistence, metrics, outcome statistics) and the
evaluation log (every version's decision per bar, trusted candles, outcomes) with its write-behind queue, and
promotion policies with their audit trail.

The names below load their module on first use (PEP 562): importing `experiments.defaults` (aifx/settings.py
does) must not import SQLAlchemy, which the stores need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ below imports the same names
    from experiments.anchors import AnchorStore as AnchorStore
    from experiments.assignment import BUCKETS as BUCKETS
    from experiments.assignment import assign_variant as assign_variant
    from experiments.assignment import bucket as bucket
    from experiments.defaults import DEFAULT_DATABASE_URL as DEFAULT_DATABASE_URL
    from experiments.defaults import ENV_DATABASE_URL as ENV_DATABASE_URL
    from experiments.defaults import default_database_url as default_database_url
    from experiments.errors import Conflict as Conflict
    from experiments.errors import ExperimentError as ExperimentError
    from experiments.errors import Invalid as Invalid
    from experiments.errors import KeyReused as KeyReused
    from experiments.errors import NotFound as NotFound
    from experiments.errors import SchemaMismatch as SchemaMismatch
    from experiments.evaluation import EvaluationStore as EvaluationStore
    from experiments.framework import ABTestingFramework as ABTestingFramework
    from experiments.framework import Assignment as Assignment
    from experiments.framework import assignment_for as assignment_for
    from experiments.promotion import PromotionStore as PromotionStore
    from experiments.recording import Abandoned as Abandoned
    from experiments.recording import Served as Served
    from experiments.records import BarLog as BarLog
    from experiments.records import Candle as Candle
    from experiments.records import CandleSeries as CandleSeries
    from experiments.records import Decision as Decision
    from experiments.records import PendingBar as PendingBar
    from experiments.records import Resolution as Resolution
    from experiments.records import StoredDecision as StoredDecision
    from experiments.schema import SCHEMA_VERSION as SCHEMA_VERSION
    from experiments.srm_flags import SrmStore as SrmStore
    from experiments.stats import compare as compare
    from experiments.stats import two_proportion_z_test as two_proportion_z_test
    from experiments.stats import welch_t_test as welch_t_test
    from experiments.store import ACTIVE_VERSION_KEY as ACTIVE_VERSION_KEY
    from experiments.store import ExperimentStore as ExperimentStore
    from experiments.writebehind import WriteBehind as WriteBehind

_MODULES = {
    "anchors": ("AnchorStore",),
    "assignment": ("BUCKETS", "assign_variant", "bucket"),
    "defaults": ("DEFAULT_DATABASE_URL", "ENV_DATABASE_URL", "default_database_url"),
    "errors": ("Conflict", "ExperimentError", "Invalid", "KeyReused", "NotFound", "SchemaMismatch"),
    "evaluation": ("EvaluationStore",),
    "framework": ("ABTestingFramework", "Assignment", "assignment_for"),
    "promotion": ("PromotionStore",),
    "recording": ("Abandoned", "Served"),
    "records": ("BarLog", "Candle", "CandleSeries", "Decision", "PendingBar", "Resolution", "StoredDecision"),
    "schema": ("SCHEMA_VERSION",),
    "srm_flags": ("SrmStore",),
    "stats": ("compare", "two_proportion_z_test", "welch_t_test"),
    "store": ("ACTIVE_VERSION_KEY", "ExperimentStore"),
    "writebehind": ("WriteBehind",),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    """A package name's value, from its module (imported now, once)."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'experiments' has no attribute {name!r}")
    value = getattr(import_module(f"experiments.{module}"), name)
    globals()[name] = value
    return value
