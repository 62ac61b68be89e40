"""The evaluation log's rows: each logged request's bar (eval_bars) and every version's decision on it (eval_decisions).

The first row of a bar wins; a decision is inserted once and later rows add their `served`; decisions about
a bar that is no longer pending are not logged. Keys are written in sorted order so PostgreSQL writers
cannot deadlock. SQLite's share goes in plain DBAPI statements: the same rows and stored text as
SQLAlchemy's statements would write (its own DATETIME processor), for a third of the Python work per row
(`python -m bench.evaluation_write`; tests/unit/test_store_evaluation.py compares both).
"""

from __future__ import annotations

import functools
import logging
import numbers
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from experiments import validation as v
from experiments.bulk import Values, bulk_insert, bulk_params, chunks, json_rows
from experiments.errors import Invalid
from experiments.records import BarLog, as_utc, utcnow
from experiments.schema import eval_bars, eval_decisions

log = logging.getLogger(__name__)

BarKey = tuple[str, str, datetime]
BAR_COLUMNS = ("pair", "timeframe", "bar_time", "entry", "atr", "pip", "state", "created_at")
DECISION_COLUMNS = ("bar_id", "version", "signal", "p_reversal", "p_long", "served")


def merge(rows: Iterable[BarLog]) -> tuple[dict[BarKey, Values], dict[tuple[BarKey, str], Values], int]:
    """Distinct bars (first row wins) and decisions (first wins, served summed); rejected count."""
    bars: dict[BarKey, Values] = {}
    decisions: dict[tuple[BarKey, str], Values] = {}
    rejected, first_error = 0, ""
    for row in rows:
        try:
            bar, decs = _bar_values(row), [_decision_values(d) for d in row.decisions]
        except (Invalid, AttributeError, TypeError, ValueError) as exc:
            rejected, first_error = rejected + 1, first_error or str(exc)
            continue
        key = (bar["pair"], bar["timeframe"], bar["bar_time"])
        bars.setdefault(key, bar)
        for d in decs:
            found = decisions.setdefault((key, d["version"]), d)
            if found is not d:
                found["served"] += d["served"]
    if rejected:
        log.warning("evaluation log: %d row(s) rejected, first: %s", rejected, first_error)
    return bars, decisions, rejected


def write(
    conn: Connection, bars: dict[BarKey, Values], decisions: dict[tuple[BarKey, str], Values], sqlite: bool
) -> int:
    """Insert the merged bars and decisions in the caller's write transaction; returns decisions written."""
    now = utcnow()
    rows = [{**bars[k], "state": "pending", "created_at": now} for k in sorted(bars)]
    ids = _sqlite_insert_bars(conn, rows) if sqlite else _pg_insert_bars(conn, rows)
    missing = [k for k in bars if k not in ids]
    ids.update(bar_ids(conn, missing, sqlite) if missing else {})
    params = [
        {**d, "bar_id": ids[key][0]} for (key, _), d in decisions.items() if key in ids and ids[key][1] == "pending"
    ]
    params.sort(key=lambda p: (p["bar_id"], p["version"]))
    if params and sqlite:
        _sqlite_upsert_decisions(conn, params)
    elif params:
        conn.execute(_upsert_decisions(sqlite), bulk_params(params, sqlite))
    return len(params)


def bar_ids(conn: Connection, keys: list[BarKey], sqlite: bool) -> dict[BarKey, tuple[int, str]]:
    """{(pair, timeframe, bar_time): (id, state)} of stored bars among the keys."""
    b = eval_bars.c
    columns = (b.id, b.pair, b.timeframe, b.bar_time, b.state)
    found: list[Any] = []
    if sqlite:  # IN lists select a superset; the exact keys are picked below
        pairs, timeframes = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
        for chunk in chunks(sorted({k[2] for k in keys})):
            stmt = select(*columns).where(b.pair.in_(pairs), b.timeframe.in_(timeframes), b.bar_time.in_(chunk))
            found.extend(conn.execute(stmt))
    else:
        rows = [{"pair": k[0], "timeframe": k[1], "bar_time": k[2]} for k in keys]
        found.extend(conn.execute(_bars_by_key(), bulk_params(rows, sqlite)))
    wanted = set(keys)
    out: dict[BarKey, tuple[int, str]] = {}
    for id_, pair, timeframe, bar_time, state in found:
        key = (pair, timeframe, as_utc(bar_time))
        if key in wanted:
            out[key] = (int(id_), state)
    return out


def _bar_values(row: BarLog) -> dict[str, Any]:
    """The eval_bars values of a row, checked."""
    return {
        "pair": v.check_pair(row.pair),
        "timeframe": v.check_timeframe(row.timeframe),
        "bar_time": v.check_time(row.bar_time, "bar_time"),
        "entry": v.check_positive(row.entry, "entry"),
        "atr": v.check_positive(row.atr, "atr"),
        "pip": v.check_positive(row.pip, "pip"),
    }


def _decision_values(d: Any) -> dict[str, Any]:
    """The eval_decisions values of a decision, checked."""
    served = d.served
    integer = type(served) is int or (isinstance(served, numbers.Integral) and not isinstance(served, bool))
    if not integer or served < 0:
        raise Invalid("served must be an integer >= 0")
    return {
        "version": v.check_version(d.version, "version"),
        "signal": v.check_signal(d.signal),
        "p_reversal": v.check_unit(d.p_reversal, "p_reversal"),
        "p_long": None if d.p_long is None else v.check_unit(d.p_long, "p_long"),
        "served": int(served),
    }


# -- PostgreSQL (and SQLAlchemy's SQLite) statements, built once per dialect --------------------------------


def _pg_insert_bars(conn: Connection, rows: list[Values]) -> dict[BarKey, tuple[int, str]]:
    """Insert bars not yet stored; {key: (id, "pending")} of those this call inserted."""
    done = conn.execute(_insert_bars(False), bulk_params(rows, False))
    return {(pair, timeframe, as_utc(t)): (int(id_), "pending") for id_, pair, timeframe, t in done}


@functools.cache
def _insert_bars(sqlite: bool) -> Any:
    """Insert bars, first wins; returns the keys and ids of those inserted."""
    b = eval_bars.c
    ins = bulk_insert(eval_bars, BAR_COLUMNS, sqlite).on_conflict_do_nothing(index_elements=list(BAR_COLUMNS[:3]))
    return ins.returning(b.id, b.pair, b.timeframe, b.bar_time)


@functools.cache
def _upsert_decisions(sqlite: bool) -> Any:
    """Insert decisions, or add a new row's served to the stored one (no write when it is 0)."""
    ins = bulk_insert(eval_decisions, DECISION_COLUMNS, sqlite)
    return ins.on_conflict_do_update(
        index_elements=list(DECISION_COLUMNS[:2]),
        set_={"served": eval_decisions.c.served + ins.excluded.served},
        where=ins.excluded.served > 0,
    )


@functools.cache
def _bars_by_key() -> Any:
    """PostgreSQL: stored bars matching the keys of the JSON document (unique-index lookups)."""
    b = eval_bars.c
    keys = json_rows(eval_bars, BAR_COLUMNS[:3])
    on = and_(b.pair == keys.c.pair, b.timeframe == keys.c.timeframe, b.bar_time == keys.c.bar_time)
    return select(b.id, b.pair, b.timeframe, b.bar_time, b.state).select_from(eval_bars.join(keys, on))


# -- SQLite: plain multi-row statements ---------------------------------------------------------------------

_SQLITE = sqlite_dialect()
_SQLITE_DATETIME = eval_bars.c.bar_time.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
# Rows per multi-row INSERT, largest first (8 parameters a row; SQLite allows 32,766): a few statement
# shapes only, so SQLite's statement cache and ours stay small whatever the batch sizes.
_SQLITE_CHUNKS = (256, 64, 16, 4, 1)
_SQLITE_ON_CONFLICT = {
    "eval_bars": "ON CONFLICT (pair, timeframe, bar_time) DO NOTHING RETURNING id, pair, timeframe, bar_time",
    "eval_decisions": "ON CONFLICT (bar_id, version) DO UPDATE SET served = eval_decisions.served + excluded.served "
    "WHERE excluded.served > 0",
}


def _sqlite_chunks(rows: list[Values]) -> Iterator[list[Values]]:
    """rows in consecutive chunks whose sizes are among _SQLITE_CHUNKS."""
    start = 0
    for size in _SQLITE_CHUNKS:
        while len(rows) - start >= size:
            yield rows[start : start + size]
            start += size


def _sqlite_insert_bars(conn: Connection, rows: list[Values]) -> dict[BarKey, tuple[int, str]]:
    """SQLite: insert bars not yet stored (first wins); {key: (id, "pending")} of those this call inserted."""
    to_text = _SQLITE_DATETIME
    assert to_text is not None
    done: dict[BarKey, tuple[int, str]] = {}
    for chunk in _sqlite_chunks(rows):
        keys = {(r["pair"], r["timeframe"], to_text(r["bar_time"])): (r["pair"], r["timeframe"], r["bar_time"])
                for r in chunk}  # fmt: skip
        params = [to_text(r[c]) if c in ("bar_time", "created_at") else r[c] for r in chunk for c in BAR_COLUMNS]
        sql = _sqlite_values_sql("eval_bars", BAR_COLUMNS, len(chunk))
        for id_, pair, timeframe, t in conn.exec_driver_sql(sql, tuple(params)):
            done[keys[(pair, timeframe, t)]] = (int(id_), "pending")
    return done


def _sqlite_upsert_decisions(conn: Connection, rows: list[Values]) -> None:
    """SQLite: insert decisions, or add a row's served to the stored one (as _upsert_decisions)."""
    for chunk in _sqlite_chunks(rows):
        params = tuple(r[c] for r in chunk for c in DECISION_COLUMNS)
        conn.exec_driver_sql(_sqlite_values_sql("eval_decisions", DECISION_COLUMNS, len(chunk)), params)


@functools.cache
def _sqlite_values_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    """INSERT of n rows into table, with its ON CONFLICT clause above."""
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * n)} {_SQLITE_ON_CONFLICT[table]}"
