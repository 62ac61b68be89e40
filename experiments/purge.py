"""Retention deletes in bounded batches: each batch is its own short transaction, so no statement runs long
(the serving statement timeout applies) and no lock is held for a whole table's worth of rows."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, delete, select, tuple_

BATCH_ROWS = 5_000  # measured on SQLite: ~50 ms per batch of predictions with their outcomes


def delete_in_batches(
    write: Callable[[], AbstractContextManager[Connection]],
    table: Table,
    where: ColumnElement[bool],
    batch_rows: int = BATCH_ROWS,
    max_batches: int = 10_000,
) -> int:
    """Delete table's rows matching where, batch_rows at a time (one transaction each); how many in all."""
    key: Any = tuple_(*table.primary_key.columns) if len(table.primary_key.columns) > 1 else None
    column = next(iter(table.primary_key.columns))
    total = 0
    for _ in range(max_batches):
        chosen = select(*table.primary_key.columns).where(where).limit(batch_rows)
        condition = key.in_(chosen) if key is not None else column.in_(chosen.scalar_subquery())
        with write() as conn:
            deleted = int(conn.execute(delete(table).where(condition)).rowcount or 0)
        total += deleted
        if deleted < batch_rows:
            break
    return total
