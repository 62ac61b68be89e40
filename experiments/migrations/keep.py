"""Migration helper: SQLite rebuilds a table to drop a column, and dropping `predictions` cascades to `outcomes`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op

KEPT = "aifx_outcomes_kept"


@contextmanager
def outcomes_kept() -> Iterator[None]:
    """Around a batch alter of `predictions`: on SQLite, copy the outcomes aside and put them back after.

    The rebuild drops the old table with foreign keys on (they cannot be turned off inside the
    migration's transaction), and ON DELETE CASCADE would delete every outcome with it.
    """
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(f"CREATE TEMP TABLE {KEPT} AS SELECT * FROM outcomes")
    yield
    if sqlite:
        op.execute(f"INSERT OR IGNORE INTO outcomes SELECT * FROM {KEPT}")
        op.execute(f"DROP TABLE {KEPT}")
