"""A/B experiments between model versions: assignment, persistence, metrics, outcome statistics."""

from experiments.assignment import BUCKETS, assign_variant, bucket
from experiments.db import DEFAULT_DATABASE_URL, ENV_DATABASE_URL, default_database_url
from experiments.errors import Conflict, ExperimentError, Invalid, KeyReused, NotFound, SchemaMismatch
from experiments.framework import ABTestingFramework, Assignment, assignment_for
from experiments.schema import SCHEMA_VERSION
from experiments.stats import compare, two_proportion_z_test, welch_t_test
from experiments.store import ACTIVE_VERSION_KEY, ExperimentStore

__all__ = [
    "ABTestingFramework",
    "ACTIVE_VERSION_KEY",
    "Assignment",
    "BUCKETS",
    "Conflict",
    "DEFAULT_DATABASE_URL",
    "ENV_DATABASE_URL",
    "ExperimentError",
    "ExperimentStore",
    "Invalid",
    "KeyReused",
    "NotFound",
    "SCHEMA_VERSION",
    "SchemaMismatch",
    "assign_variant",
    "assignment_for",
    "bucket",
    "compare",
    "default_database_url",
    "two_proportion_z_test",
    "welch_t_test",
]
