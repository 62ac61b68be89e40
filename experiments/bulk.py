"""Many-row statements of the evaluation log: executemany on SQLite, rows from one JSON document on PostgreSQL.

psycopg's executemany runs one statement per row, and a multi-row VALUES (or arrays of parameters) costs
more to build than the query; json.dumps is C code and PostgreSQL reads the document with
json_to_recordset. Floats survive exactly (shortest repr, strtod).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Table, Text, bindparam, cast, column, func, select
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

IN_CHUNK = 1000  # keys per IN (...) list: far below SQLite's and PostgreSQL's bind limits

Values = dict[str, Any]


def bulk_insert(table: Table, names: tuple[str, ...], sqlite: bool) -> Any:
    """A many-row INSERT of the columns `names`: executemany on SQLite, the JSON document on PostgreSQL."""
    if sqlite:
        return sqlite_insert(table)
    source = json_rows(table, names)
    return pg_insert(table).from_select(list(names), select(*(source.c[n] for n in names)))


def json_rows(table: Table, names: tuple[str, ...]) -> Any:
    """PostgreSQL: the rows of the JSON document parameter `doc`, typed like the table's columns."""
    return (
        func.json_to_recordset(cast(bindparam("doc", type_=Text), JSON))
        .table_valued(*(column(n, table.c[n].type) for n in names))
        .render_derived(with_types=True)
    )


def bulk_params(rows: list[Values], sqlite: bool) -> Any:
    """The parameters of a bulk_insert (or json_rows) statement."""
    return rows if sqlite else {"doc": json.dumps(rows, default=_jsonable)}


def chunks(items: list[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _jsonable(value: Any) -> str:
    """json.dumps' fallback: datetimes (UTC here) as ISO-8601."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return value.isoformat()
