"""The evaluation log: every logged version's decision on each bar, trusted candles, outcomes, live figures.

Shares the engine of an ExperimentStore (so no connection before first use). Safe with writers in
several processes: rows go in with INSERT ... ON CONFLICT (the first bar row and the first candle
win, a decision's `served` adds up) and bars change state through UPDATEs guarded by their state
(the first resolution wins); keys are written in sorted order so PostgreSQL writers cannot deadlock.

Coverage: forex has no candles over weekends, so a bar counts as covered once at least `horizon`
stored candles of its pair and timeframe lie after bar_time, and its outcome uses the first `horizon`
of them whatever their spacing (their timestamps go to the caller, who may judge gaps).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import numbers
import re
import sys
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Row,
    Select,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from experiments import validation as v
from experiments.db import WRITE_OPTION, is_sqlite
from experiments.errors import Invalid
from experiments.purge import delete_in_batches
from experiments.records import (
    BarLog,
    Candle,
    CandleSeries,
    PendingBar,
    Resolution,
    StoredDecision,
    as_utc,
    iso,
    utcnow,
)
from experiments.schema import (
    MAX_ABS_PIPS,
    NOTE_LEN,
    PAIR_LEN,
    RESULTS,
    SOURCE_LEN,
    TIMEFRAME_LEN,
    eval_bars,
    eval_decisions,
    market_candles,
)
from experiments.store import ExperimentStore

log = logging.getLogger(__name__)

PAIR_RE = re.compile(rf"^[A-Za-z0-9/_.-]{{1,{PAIR_LEN}}}$")
TIMEFRAME_RE = re.compile(rf"^[A-Za-z0-9]{{1,{TIMEFRAME_LEN}}}$")
SOURCE_RE = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{SOURCE_LEN}}}$")
IN_CHUNK = 1000  # keys per IN (...) list: far below SQLite's and PostgreSQL's bind limits
SPAN_BARS = 5000  # at most this many steps of bar_time per candle query of resolvable()

BarKey = tuple[str, str, datetime]
Values = dict[str, Any]


class EvaluationStore:
    """Evaluation bars, decisions and trusted candles, over an ExperimentStore's engine."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (BEGIN IMMEDIATE on SQLite)."""
        self._store.ensure_schema()
        with self._store.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; snapshot=True gives one consistent view on PostgreSQL too."""
        self._store.ensure_schema()
        with self._store.engine.connect() as conn:
            if snapshot and not self._sqlite:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @property
    def _sqlite(self) -> bool:
        return is_sqlite(self._store.engine)

    # -- the log -----------------------------------------------------------------------------

    def log(self, rows: Iterable[BarLog]) -> dict[str, int]:
        """Log requests in one transaction: {"bars", "decisions", "rejected"} (distinct keys written).

        The first row of a bar wins; a decision is inserted once and later rows add their `served`.
        Decisions about a bar that is no longer pending are not logged. An invalid row is rejected
        (counted and logged) so it cannot fail the rest of its batch.
        """
        bars, decisions, rejected = _merge(rows)
        if not bars:
            return {"bars": 0, "decisions": 0, "rejected": rejected}
        now = utcnow()
        bar_rows = [{**bars[k], "state": "pending", "created_at": now} for k in sorted(bars)]
        sqlite = self._sqlite
        with self._write() as conn:
            ids = _sqlite_insert_bars(conn, bar_rows) if sqlite else self._insert_bars(conn, bar_rows)
            missing = [k for k in bars if k not in ids]
            ids.update(_bar_ids(conn, missing, sqlite) if missing else {})
            params = [
                {**d, "bar_id": ids[key][0]}
                for (key, _), d in decisions.items()
                if key in ids and ids[key][1] == "pending"
            ]
            params.sort(key=lambda p: (p["bar_id"], p["version"]))
            if params and sqlite:
                _sqlite_upsert_decisions(conn, params)
            elif params:
                conn.execute(_upsert_decisions(sqlite), _bulk_params(params, sqlite))
        return {"bars": len(bars), "decisions": len(params), "rejected": rejected}

    def _insert_bars(self, conn: Connection, rows: list[Values]) -> dict[BarKey, tuple[int, str]]:
        """Insert bars not yet stored; {key: (id, "pending")} of those this call inserted."""
        done = conn.execute(_insert_bars(self._sqlite), _bulk_params(rows, self._sqlite))
        return {(pair, timeframe, as_utc(t)): (int(id_), "pending") for id_, pair, timeframe, t in done}

    # -- candles -----------------------------------------------------------------------------

    def add_candles(
        self, pair: str, timeframe: str, candles: Sequence[Candle], source: str, tolerance: float = 1e-6
    ) -> dict[str, Any]:
        """Store trusted candles, the first stored wins: {"inserted", "duplicates", "conflicts", "conflict_times",
        "inserted_times"}.

        A candle differing from the stored one by more than `tolerance` (relative, per price) is a
        conflict. Mostly duplicates is the common case, so stored candles are read first and only
        new ones are written (one write transaction, none when nothing is new).
        """
        pair, timeframe = _check_pair(pair), _check_timeframe(timeframe)
        if not isinstance(source, str) or not SOURCE_RE.match(source):
            raise Invalid(f"source must be 1-{SOURCE_LEN} characters of A-Z a-z 0-9 _ . : -")
        if not (isinstance(tolerance, int | float) and 0 <= tolerance < 1):
            raise Invalid("tolerance must be a number in [0, 1)")
        incoming, counts = _dedupe_candles([_check_candle(c) for c in candles], tolerance)
        if not incoming:
            return counts
        with self._read() as conn:
            stored = _stored_candles(conn, pair, timeframe, list(incoming))
        new = _compare(incoming, stored, tolerance, counts)
        if new:
            self._insert_candles(pair, timeframe, new, source, tolerance, counts)
        return counts

    def _insert_candles(
        self, pair: str, timeframe: str, new: list[Candle], source: str, tolerance: float, counts: dict[str, Any]
    ) -> None:
        """Insert new candles; any a concurrent writer stored first are compared with its values."""
        now = utcnow()
        rows = [
            {"pair": pair, "timeframe": timeframe, "ts": c.ts, "open": c.open, "high": c.high, "low": c.low,
             "close": c.close, "source": source, "received_at": now}
            for c in new
        ]  # fmt: skip
        with self._write() as conn:
            inserted = conn.execute(_insert_candles(self._sqlite), _bulk_params(rows, self._sqlite)).scalars()
            done = {as_utc(ts) for ts in inserted}
            counts["inserted"] += len(done)
            counts["inserted_times"] = sorted(done)
            raced = {c.ts: c for c in new if c.ts not in done}
            if raced:
                stored = _stored_candles(conn, pair, timeframe, list(raced))
                _compare(raced, stored, tolerance, counts)

    # -- resolution --------------------------------------------------------------------------

    def resolvable(self, step: timedelta, horizon: int, limit: int = 1000, before: int = 0) -> list[PendingBar]:
        """Up to `limit` covered pending bars, oldest first per pair and timeframe, with their candles.

        Each comes with its decisions, the first `horizon` stored candles after bar_time (`after`)
        and up to `before` stored candles at and before bar_time (`before`, oldest first). `step`
        is the timeframe's bar length: it bounds the time span each candle query reads.
        """
        if horizon < 1 or limit < 1 or before < 0 or step <= timedelta(0):
            raise Invalid("resolvable needs horizon >= 1, limit >= 1, before >= 0 and a positive step")
        out: list[PendingBar] = []
        with self._read(snapshot=True) as conn:
            group = _next_group(conn, None)
            while group is not None and len(out) < limit:
                pair, timeframe = group
                group = _next_group(conn, group)
                covered = _covered_bars(pair, timeframe, horizon, limit - len(out))
                bars = conn.execute(covered).all()
                decisions = _decisions(conn, covered)  # the same bars: one snapshot, no list of ids
                out.extend(_with_candles(conn, pair, timeframe, bars, decisions, step, horizon, before))
        return out

    def write_results(self, results: Iterable[Resolution], facts: dict[int, tuple[float, float]] | None = None) -> int:
        """Record outcomes and mark their bars resolved (one transaction); returns bars newly resolved.

        facts: {bar_id: (entry, atr)} from trusted candles, stored with the bar in place of what was logged.
        Idempotent: a bar no longer pending is left as it is (the first resolution wins).
        """
        by_bar: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in results:
            params = check_resolution(r)
            by_bar[params["bar_id"]].append(params)
        if not by_bar:
            return 0
        checked = {i: (_positive(e, "entry"), _positive(a, "atr")) for i, (e, a) in (facts or {}).items()}
        now = utcnow()
        won: list[int] = []
        with self._write() as conn:
            for chunk in _chunks(sorted(by_bar)) if self._sqlite else [sorted(by_bar)]:
                won.extend(conn.execute(_resolve_bars(self._sqlite), {"ids": chunk, "now": now}).scalars())
            rows = [p for bar_id in sorted(won) for p in sorted(by_bar[bar_id], key=lambda p: p["version"])]
            if rows:
                conn.execute(_result_update(self._sqlite), _result_params(rows, self._sqlite))
            trusted = [
                {"bid": i, "t_entry": checked[i][0], "t_atr": checked[i][1]} for i in sorted(won) if i in checked
            ]
            if trusted:
                b = eval_bars.c
                stmt = update(eval_bars).where(b.id == bindparam("bid")).values(entry=bindparam("t_entry"),
                                                                               atr=bindparam("t_atr"))  # fmt: skip
                conn.execute(stmt, trusted)
        return len(won)

    def void(self, bars: Sequence[tuple[int, str]]) -> int:
        """Set aside pending bars that cannot be resolved, each with why (state expired, `note` set)."""
        rows = [{"bid": int(i), "why": str(why)[:NOTE_LEN] or "void"} for i, why in sorted(bars)]
        if not rows:
            return 0
        b = eval_bars.c
        stmt = (
            update(eval_bars)
            .where(b.id == bindparam("bid"), b.state == "pending")
            .values(state="expired", note=bindparam("why"), resolved_at=utcnow())
        )
        with self._write() as conn:
            return int(conn.execute(stmt, rows).rowcount or 0)

    def candles_for(self, pair: str, timeframe: str, first: datetime, last: datetime, before: int) -> CandleSeries:
        """Stored candles from the `before`-th at or before `first` through `last`, oldest first."""
        pair, timeframe = _check_pair(pair), _check_timeframe(timeframe)
        mc = market_candles.c
        key = (mc.pair == pair, mc.timeframe == timeframe)
        first, last = as_utc(first), as_utc(last)
        lookback = select(mc.ts).where(*key, mc.ts <= first).order_by(mc.ts.desc()).limit(max(1, before)).subquery()
        low = func.coalesce(select(func.min(lookback.c.ts)).scalar_subquery(), first)
        stmt = (
            select(mc.ts, mc.open, mc.high, mc.low, mc.close).where(*key, mc.ts >= low, mc.ts <= last).order_by(mc.ts)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        columns = list(zip(*rows, strict=True)) or [(), (), (), (), ()]
        return CandleSeries(tuple(as_utc(t) for t in columns[0]), *(tuple(c) for c in columns[1:]))

    def logged(self, pair: str, timeframe: str, times: Sequence[datetime]) -> set[datetime]:
        """Which of these bar times of a pair and timeframe are in the log already."""
        pair, timeframe = _check_pair(pair), _check_timeframe(timeframe)
        keys = [(pair, timeframe, as_utc(t)) for t in times]
        if not keys:
            return set()
        with self._read() as conn:
            return {k[2] for k in _bar_ids(conn, keys, self._sqlite)}

    def expire(self, older_than: datetime) -> int:
        """Pending bars created before `older_than` become expired; returns how many."""
        cutoff = as_utc(older_than)
        stmt = (
            update(eval_bars)
            .where(eval_bars.c.state == "pending", eval_bars.c.created_at < cutoff)
            .values(state="expired")
        )
        with self._write() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    # -- figures -----------------------------------------------------------------------------

    def live(
        self, version: str, pair: str | None = None, timeframe: str | None = None, since: datetime | None = None
    ) -> dict[str, Any]:
        """One version's live figures over bars (bar_time >= since), from one aggregate query.

        Signals are resolved long/short decisions with a result; Stage 1 counts take signal != hold
        as the positive prediction against label_held (decisions without a label are left out).
        """
        d, b = eval_decisions.c, eval_bars.c
        stmt = (
            select(*_live_columns())
            .select_from(eval_decisions.join(eval_bars, d.bar_id == b.id))
            .where(d.version == version, *_bar_filters(pair, timeframe, since))
        )
        with self._read() as conn:
            row = conn.execute(stmt).one()
        return _live_dict(row._mapping)

    def pending_backlog(self) -> tuple[int, datetime | None]:
        """(pending bars, oldest pending created_at) for the backlog gauges."""
        stmt = select(func.count(), func.min(eval_bars.c.created_at)).where(eval_bars.c.state == "pending")
        with self._read() as conn:
            count, oldest = conn.execute(stmt).one()
        return int(count), (as_utc(oldest) if oldest is not None else None)

    def paired(
        self,
        a: str,
        b: str,
        pair: str | None = None,
        timeframe: str | None = None,
        since: datetime | None = None,
        limit: int = 100_000,
        logged_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Resolved bars on which both versions decided, in bar_time order (the newest `limit`).

        since: bars at or after this bar time; logged_since: bars first logged at or after this time.
        """
        da, db = eval_decisions.alias("a"), eval_decisions.alias("b")
        bars = eval_bars.c
        fields = ("signal", "result", "pips", "p_reversal", "label_held")
        stmt = (
            select(bars.id, bars.pair, bars.timeframe, bars.bar_time, bars.atr, bars.pip,
                   *(da.c[f].label(f"a_{f}") for f in fields), *(db.c[f].label(f"b_{f}") for f in fields))
            .select_from(
                eval_bars.join(da, and_(da.c.bar_id == bars.id, da.c.version == a))
                .join(db, and_(db.c.bar_id == bars.id, db.c.version == b))
            )
            .where(bars.state == "resolved", *_bar_filters(pair, timeframe, since))
            .where(*([bars.created_at >= as_utc(logged_since)] if logged_since is not None else []))
            .order_by(bars.bar_time.desc(), bars.pair.desc(), bars.timeframe.desc())
            .limit(limit)
        )  # fmt: skip
        with self._read() as conn:
            rows = conn.execute(stmt).all()[::-1]
        return [_paired_dict(r._mapping, fields) for r in rows]

    # -- retention ---------------------------------------------------------------------------

    def purge(self, older_than: timedelta) -> dict[str, int]:
        """Delete bars created (with their decisions) and candles received before now - older_than."""
        cutoff = utcnow() - older_than
        bars = delete_in_batches(self._write, eval_bars, eval_bars.c.created_at < cutoff)
        candles = delete_in_batches(self._write, market_candles, market_candles.c.received_at < cutoff)
        return {"bars": bars, "candles": candles}


# -- many-row statements (built once per dialect) -------------------------------------------------

BAR_COLUMNS = ("pair", "timeframe", "bar_time", "entry", "atr", "pip", "state", "created_at")
DECISION_COLUMNS = ("bar_id", "version", "signal", "p_reversal", "p_long", "served")
RESULT_COLUMNS = ("bar_id", "version", "result", "pips", "label_held")
CANDLE_COLUMNS = ("pair", "timeframe", "ts", "open", "high", "low", "close", "source", "received_at")


# SQLite's share of the log in plain DBAPI statements: the same rows and stored text as SQLAlchemy's
# statements above would write (its own DATETIME processor), for a third of the Python work per row
# (`python -m bench.evaluation_write`).
_SQLITE = sqlite_dialect()
_SQLITE_DATETIME = eval_bars.c.bar_time.type.dialect_impl(_SQLITE).bind_processor(_SQLITE)
# Rows per multi-row INSERT, largest first (8 parameters a row; SQLite allows 32,766): a few statement
# shapes only, so SQLite's statement cache and ours stay small whatever the batch sizes.
_SQLITE_CHUNKS = (256, 64, 16, 4, 1)


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


_SQLITE_ON_CONFLICT = {
    "eval_bars": "ON CONFLICT (pair, timeframe, bar_time) DO NOTHING RETURNING id, pair, timeframe, bar_time",
    "eval_decisions": "ON CONFLICT (bar_id, version) DO UPDATE SET served = eval_decisions.served + excluded.served "
    "WHERE excluded.served > 0",
}


@functools.cache
def _sqlite_values_sql(table: str, columns: tuple[str, ...], n: int) -> str:
    """INSERT of n rows into table, with its ON CONFLICT clause above."""
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * n)} {_SQLITE_ON_CONFLICT[table]}"


def _bulk_insert(table: Table, names: tuple[str, ...], sqlite: bool) -> Any:
    """A many-row INSERT: executemany on SQLite, rows from one JSON document on PostgreSQL.

    psycopg's executemany runs one statement per row, and a multi-row VALUES (or arrays of
    parameters) costs more to build than the query; json.dumps is C code and PostgreSQL reads
    the document with json_to_recordset. Floats survive exactly (shortest repr, strtod).
    """
    if sqlite:
        return sqlite_insert(table)
    source = _json_rows(table, names)
    return pg_insert(table).from_select(list(names), select(*(source.c[n] for n in names)))


def _json_rows(table: Table, names: tuple[str, ...]) -> Any:
    """PostgreSQL: the rows of the JSON document parameter `doc`, typed like the table's columns."""
    return (
        func.json_to_recordset(cast(bindparam("doc", type_=Text), JSON))
        .table_valued(*(column(n, table.c[n].type) for n in names))
        .render_derived(with_types=True)
    )


def _bulk_params(rows: list[Values], sqlite: bool) -> Any:
    """The parameters of a _bulk_insert statement."""
    return rows if sqlite else {"doc": json.dumps(rows, default=_jsonable)}


@functools.cache
def _insert_bars(sqlite: bool) -> Any:
    """Insert bars, first wins; returns the keys and ids of those inserted."""
    b = eval_bars.c
    ins = _bulk_insert(eval_bars, BAR_COLUMNS, sqlite).on_conflict_do_nothing(index_elements=list(BAR_COLUMNS[:3]))
    return ins.returning(b.id, b.pair, b.timeframe, b.bar_time)


@functools.cache
def _upsert_decisions(sqlite: bool) -> Any:
    """Insert decisions, or add a new row's served to the stored one (no write when it is 0)."""
    ins = _bulk_insert(eval_decisions, DECISION_COLUMNS, sqlite)
    return ins.on_conflict_do_update(
        index_elements=list(DECISION_COLUMNS[:2]),
        set_={"served": eval_decisions.c.served + ins.excluded.served},
        where=ins.excluded.served > 0,
    )


@functools.cache
def _insert_candles(sqlite: bool) -> Any:
    """Insert candles, first wins; returns the ts of those inserted."""
    ins = _bulk_insert(market_candles, CANDLE_COLUMNS, sqlite)
    return ins.on_conflict_do_nothing(index_elements=list(CANDLE_COLUMNS[:3])).returning(market_candles.c.ts)


@functools.cache
def _bars_by_key() -> Any:
    """PostgreSQL: stored bars matching the keys of the JSON document (unique-index lookups)."""
    b = eval_bars.c
    keys = _json_rows(eval_bars, BAR_COLUMNS[:3])
    on = and_(b.pair == keys.c.pair, b.timeframe == keys.c.timeframe, b.bar_time == keys.c.bar_time)
    return select(b.id, b.pair, b.timeframe, b.bar_time, b.state).select_from(eval_bars.join(keys, on))


@functools.cache
def _resolve_bars(sqlite: bool) -> Any:
    """Mark the pending bars among `ids` resolved at `now`; returns their ids."""
    ids = bindparam("ids", expanding=True) if sqlite else any_(bindparam("ids", type_=ARRAY(Integer)))
    chosen = eval_bars.c.id.in_(ids) if sqlite else eval_bars.c.id == ids
    return (
        update(eval_bars)
        .where(chosen, eval_bars.c.state == "pending")
        .values(state="resolved", resolved_at=bindparam("now"))
        .returning(eval_bars.c.id)
    )


@functools.cache
def _result_update(sqlite: bool) -> Any:
    """Write decisions' outcomes: executemany on SQLite, one UPDATE ... FROM the JSON rows on PostgreSQL."""
    d = eval_decisions.c
    if sqlite:
        return (
            update(eval_decisions)
            .where(d.bar_id == bindparam("b_bar_id"), d.version == bindparam("b_version"))
            .values(result=bindparam("b_result"), pips=bindparam("b_pips"), label_held=bindparam("b_label_held"))
        )
    r = _json_rows(eval_decisions, RESULT_COLUMNS).c
    return (
        update(eval_decisions)
        .where(d.bar_id == r.bar_id, d.version == r.version)
        .values(result=r.result, pips=r.pips, label_held=r.label_held)
    )


def _result_params(rows: list[Values], sqlite: bool) -> Any:
    """The parameters of _result_update (SQLite's may not be named like the columns they set)."""
    return [{f"b_{k}": x for k, x in r.items()} for r in rows] if sqlite else _bulk_params(rows, sqlite)


# -- log helpers --------------------------------------------------------------------------------


def _merge(rows: Iterable[BarLog]) -> tuple[dict[BarKey, Values], dict[tuple[BarKey, str], Values], int]:
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


def _bar_values(row: BarLog) -> dict[str, Any]:
    """The eval_bars values of a row, checked."""
    return {
        "pair": _check_pair(row.pair),
        "timeframe": _check_timeframe(row.timeframe),
        "bar_time": _check_time(row.bar_time, "bar_time"),
        "entry": _positive(row.entry, "entry"),
        "atr": _positive(row.atr, "atr"),
        "pip": _positive(row.pip, "pip"),
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
        "p_reversal": _probability(d.p_reversal, "p_reversal"),
        "p_long": None if d.p_long is None else _probability(d.p_long, "p_long"),
        "served": int(served),
    }


def _bar_ids(conn: Connection, keys: list[BarKey], sqlite: bool) -> dict[BarKey, tuple[int, str]]:
    """{(pair, timeframe, bar_time): (id, state)} of stored bars among the keys."""
    b = eval_bars.c
    columns = (b.id, b.pair, b.timeframe, b.bar_time, b.state)
    found: list[Any] = []
    if sqlite:  # IN lists select a superset; the exact keys are picked below
        pairs, timeframes = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
        for chunk in _chunks(sorted({k[2] for k in keys})):
            stmt = select(*columns).where(b.pair.in_(pairs), b.timeframe.in_(timeframes), b.bar_time.in_(chunk))
            found.extend(conn.execute(stmt))
    else:
        rows = [{"pair": k[0], "timeframe": k[1], "bar_time": k[2]} for k in keys]
        found.extend(conn.execute(_bars_by_key(), _bulk_params(rows, sqlite)))
    wanted = set(keys)
    out: dict[BarKey, tuple[int, str]] = {}
    for id_, pair, timeframe, bar_time, state in found:
        key = (pair, timeframe, as_utc(bar_time))
        if key in wanted:
            out[key] = (int(id_), state)
    return out


# -- candle helpers -----------------------------------------------------------------------------


def _check_candle(c: Candle) -> Candle:
    """A finite, positive, consistent OHLC candle with a UTC timestamp."""
    ts = _check_time(c.ts, "candle ts")
    o, h, lo, cl = (_positive(x, "candle price") for x in (c.open, c.high, c.low, c.close))
    if not (h >= lo and h >= o and h >= cl and lo <= o and lo <= cl):
        raise Invalid(f"candle at {iso(ts)}: high must be >= open, close, low and low <= open, close")
    return Candle(ts, o, h, lo, cl)


def _dedupe_candles(candles: list[Candle], tolerance: float) -> tuple[dict[datetime, Candle], dict[str, Any]]:
    """Candles by ts (the first of a repeated ts wins, repeats are counted) and fresh counts."""
    counts: dict[str, Any] = {
        "inserted": 0,
        "duplicates": 0,
        "conflicts": 0,
        "conflict_times": [],
        "inserted_times": [],
    }
    out: dict[datetime, Candle] = {}
    for c in candles:
        first = out.setdefault(c.ts, c)
        if first is not c:
            _count(counts, c.ts, _same(first, (c.open, c.high, c.low, c.close), tolerance))
    return out, counts


def _stored_candles(
    conn: Connection, pair: str, timeframe: str, times: list[datetime]
) -> dict[datetime, tuple[float, float, float, float]]:
    """Stored (open, high, low, close) by ts over the span of `times` (one primary-key range scan)."""
    mc = market_candles.c
    stmt = select(mc.ts, mc.open, mc.high, mc.low, mc.close).where(
        mc.pair == pair, mc.timeframe == timeframe, mc.ts >= min(times), mc.ts <= max(times)
    )
    return {as_utc(ts): (o, h, lo, c) for ts, o, h, lo, c in conn.execute(stmt)}


def _compare(
    incoming: dict[datetime, Candle],
    stored: dict[datetime, tuple[float, float, float, float]],
    tolerance: float,
    counts: dict[str, Any],
) -> list[Candle]:
    """Count incoming candles already stored (duplicate or conflict); return the new ones in ts order."""
    new = []
    for ts in sorted(incoming):
        old = stored.get(ts)
        if old is None:
            new.append(incoming[ts])
        else:
            _count(counts, ts, _same(incoming[ts], old, tolerance))
    return new


def _same(c: Candle, old: tuple[float, float, float, float], tolerance: float) -> bool:
    """Whether every price agrees within the relative tolerance."""
    new = (c.open, c.high, c.low, c.close)
    return all(math.isclose(x, y, rel_tol=tolerance, abs_tol=0.0) for x, y in zip(new, old, strict=True))


def _count(counts: dict[str, Any], ts: datetime, same: bool) -> None:
    if same:
        counts["duplicates"] += 1
    else:
        counts["conflicts"] += 1
        counts["conflict_times"].append(ts)


# -- resolution helpers -------------------------------------------------------------------------


def _next_group(conn: Connection, after: tuple[str, str] | None) -> tuple[str, str] | None:
    """The first (pair, timeframe) with pending bars after `after`: one index probe (a loose scan)."""
    b = eval_bars.c
    stmt = select(b.pair, b.timeframe).where(b.state == "pending").order_by(b.pair, b.timeframe).limit(1)
    if after is not None:
        stmt = stmt.where(tuple_(b.pair, b.timeframe) > tuple_(*after))
    row = conn.execute(stmt).first()
    return None if row is None else (row.pair, row.timeframe)


def _covered_bars(pair: str, timeframe: str, horizon: int, limit: int) -> Select[Any]:
    """Pending bars with >= horizon later candles: bar_time before the horizon-th latest candle."""
    mc, b = market_candles.c, eval_bars.c
    nth_latest = (
        select(mc.ts)
        .where(mc.pair == pair, mc.timeframe == timeframe)
        .order_by(mc.ts.desc())
        .offset(horizon - 1)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(eval_bars)
        .where(b.state == "pending", b.pair == pair, b.timeframe == timeframe, b.bar_time < nth_latest)
        .order_by(b.bar_time)
        .limit(limit)
    )


def _with_candles(
    conn: Connection,
    pair: str,
    timeframe: str,
    bars: Sequence[Row[Any]],
    decisions: dict[int, tuple[StoredDecision, ...]],
    step: timedelta,
    horizon: int,
    before: int,
) -> list[PendingBar]:
    """PendingBars with their decisions and candles, one candle query per span of bars."""
    out: list[PendingBar] = []
    for span in _spans(bars, step * SPAN_BARS):
        first, last = as_utc(span[0].bar_time), as_utc(span[-1].bar_time)
        ts, ohlc = _candles_around(conn, pair, timeframe, first, last, horizon, before)
        for bar in span:
            bar_time = as_utc(bar.bar_time)
            i = bisect_right(ts, bar_time)
            if len(ts) - i < horizon:
                continue  # candles purged since the bar was found: not covered any more
            out.append(_pending_bar(bar, bar_time, decisions.get(bar.id, ()), _series(ts, ohlc, i, i + horizon),
                                    _series(ts, ohlc, max(0, i - before), i)))  # fmt: skip
    return out


def _spans(bars: Sequence[Row[Any]], max_span: timedelta) -> Iterator[list[Row[Any]]]:
    """Consecutive runs of bars (in bar_time order) no longer than max_span each."""
    span: list[Row[Any]] = []
    for bar in bars:
        if span and bar.bar_time - span[0].bar_time > max_span:
            yield span
            span = []
        span.append(bar)
    if span:
        yield span


def _candles_around(
    conn: Connection, pair: str, timeframe: str, first: datetime, last: datetime, horizon: int, before: int
) -> tuple[list[datetime], list[list[float]]]:
    """Stored candles as (ts, [open, high, low, close] columns), from the `before`-th at or before
    `first` to the `horizon`-th after `last`."""
    mc = market_candles.c
    key = (mc.pair == pair, mc.timeframe == timeframe)
    lookback = select(mc.ts).where(*key, mc.ts <= first).order_by(mc.ts.desc()).limit(before).subquery()
    low = func.coalesce(select(func.min(lookback.c.ts)).scalar_subquery(), first)
    high = select(mc.ts).where(*key, mc.ts > last).order_by(mc.ts).offset(horizon - 1).limit(1).scalar_subquery()
    stmt = select(mc.ts, mc.open, mc.high, mc.low, mc.close).where(*key, mc.ts >= low, mc.ts <= high).order_by(mc.ts)
    columns = list(zip(*conn.execute(stmt), strict=True)) or [(), (), (), (), ()]
    return [as_utc(t) for t in columns[0]], [list(c) for c in columns[1:]]


def _series(ts: list[datetime], ohlc: list[list[float]], start: int, stop: int) -> CandleSeries:
    """Candles [start, stop) of the columns as a CandleSeries."""
    o, h, lo, c = (tuple(col[start:stop]) for col in ohlc)
    return CandleSeries(tuple(ts[start:stop]), o, h, lo, c)


def _pending_bar(
    bar: Row[Any], bar_time: datetime, decisions: tuple[StoredDecision, ...], after: CandleSeries, before: CandleSeries
) -> PendingBar:
    return PendingBar(
        int(bar.id), bar.pair, bar.timeframe, bar_time, bar.entry, bar.atr, bar.pip, as_utc(bar.created_at),
        decisions, after, before,
    )  # fmt: skip


def _decisions(conn: Connection, bars: Select[Any]) -> dict[int, tuple[StoredDecision, ...]]:
    """Stored decisions of the bars a query selects, by bar id, in version order."""
    sub = bars.subquery()
    d = eval_decisions.c
    stmt = select(eval_decisions).join(sub, d.bar_id == sub.c.id).order_by(d.bar_id, d.version)
    out: dict[int, list[StoredDecision]] = defaultdict(list)
    for r in conn.execute(stmt):
        out[r.bar_id].append(_stored_decision(r))
    return {k: tuple(ds) for k, ds in out.items()}


def _stored_decision(r: Row[Any]) -> StoredDecision:
    held = None if r.label_held is None else bool(r.label_held)
    return StoredDecision(r.version, r.signal, r.p_reversal, r.p_long, int(r.served), r.result, r.pips, held)


def check_resolution(r: Resolution) -> dict[str, Any]:
    """The values of one outcome: result in RESULTS or None, bounded pips or None, bool or None."""
    if r.result is not None and r.result not in RESULTS:
        raise Invalid(f"result must be one of {', '.join(RESULTS)} or None (got {r.result!r:.40})")
    pips = None if r.pips is None else _real(r.pips)
    if r.pips is not None and (pips is None or abs(pips) > MAX_ABS_PIPS):
        raise Invalid(f"pips must be a finite number between -{MAX_ABS_PIPS} and {MAX_ABS_PIPS} or None")
    if r.label_held is not None and not isinstance(r.label_held, bool):
        raise Invalid("label_held must be a bool or None")
    version = v.check_version(r.version, "version")
    return {"bar_id": int(r.bar_id), "version": version, "result": r.result, "pips": pips, "label_held": r.label_held}


# -- figures helpers ----------------------------------------------------------------------------


def _bar_filters(pair: str | None, timeframe: str | None, since: datetime | None) -> list[Any]:
    b = eval_bars.c
    out: list[Any] = []
    if pair is not None:
        out.append(b.pair == pair)
    if timeframe is not None:
        out.append(b.timeframe == timeframe)
    if since is not None:
        out.append(b.bar_time >= as_utc(since))
    return out


def _live_columns() -> list[Any]:
    """SUM(CASE ...) aggregates of one version's decisions joined with their bars."""
    d, b = eval_decisions.c, eval_bars.c
    resolved = b.state == "resolved"
    signal = and_(resolved, d.signal != "hold", d.result.is_not(None))
    labelled = and_(resolved, d.label_held.is_not(None))
    held, missed = d.label_held.is_(True), d.label_held.is_(False)
    squared_error = case((held, (1.0 - d.p_reversal) * (1.0 - d.p_reversal)), else_=d.p_reversal * d.p_reversal)

    def count(*conditions: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    return [
        count(resolved).label("resolved"),
        count(b.state == "pending").label("pending"),
        count(b.state == "expired").label("expired"),
        count(b.note.is_not(None)).label("void"),
        count(signal).label("signals"),
        count(signal, d.result == "hit").label("hits"),
        func.sum(case((signal, d.pips))).label("total_pips"),
        count(labelled).label("labelled"),
        func.sum(case((labelled, squared_error))).label("squared_error"),
        count(labelled, d.signal != "hold", held).label("tp"),
        count(labelled, d.signal != "hold", missed).label("fp"),
        count(labelled, d.signal == "hold", held).label("fn"),
    ]


def _live_dict(m: Any) -> dict[str, Any]:
    """Counts and sums as ints and floats, plus the ratios (None when undefined)."""
    out: dict[str, Any] = {k: int(m[k] or 0) for k in ("resolved", "pending", "expired", "void", "signals", "hits",
                                                        "labelled", "tp", "fp", "fn")}  # fmt: skip
    out["total_pips"] = float(m["total_pips"] or 0.0)
    out["squared_error"] = float(m["squared_error"] or 0.0)
    out["hit_rate"] = _ratio(out["hits"], out["signals"])
    out["mean_pips"] = out["total_pips"] / out["signals"] if out["signals"] else None
    out["brier"] = out["squared_error"] / out["labelled"] if out["labelled"] else None
    out["stage1_precision"] = _ratio(out["tp"], out["tp"] + out["fp"])
    out["stage1_recall"] = _ratio(out["tp"], out["tp"] + out["fn"])
    return out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _paired_dict(m: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    def side(prefix: str) -> dict[str, Any]:
        values = {f: m[f"{prefix}_{f}"] for f in fields}
        values["label_held"] = None if values["label_held"] is None else bool(values["label_held"])
        return values

    return {
        "bar_id": int(m["id"]), "pair": m["pair"], "timeframe": m["timeframe"], "bar_time": as_utc(m["bar_time"]),
        "atr": m["atr"], "pip": m["pip"], "a": side("a"), "b": side("b"),
    }  # fmt: skip


# -- checks -------------------------------------------------------------------------------------


def _check_pair(value: Any) -> str:
    if not isinstance(value, str) or not PAIR_RE.match(value):
        raise Invalid(f"pair must be 1-{PAIR_LEN} characters of A-Z a-z 0-9 / _ . - (got {value!r:.40})")
    return value


def _check_timeframe(value: Any) -> str:
    if not isinstance(value, str) or not TIMEFRAME_RE.match(value):
        raise Invalid(f"timeframe must be 1-{TIMEFRAME_LEN} characters of A-Z a-z 0-9 (got {value!r:.40})")
    return value


def _check_time(value: Any, field: str) -> datetime:
    """A datetime in UTC (naive values are taken as UTC)."""
    if not isinstance(value, datetime):
        raise Invalid(f"{field} must be a datetime")
    return as_utc(value)


def _real(value: Any) -> float | None:
    """The value as a finite float (numpy scalars too), else None."""
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def _positive(value: Any, field: str) -> float:
    """A finite number at least the smallest normal double (a subnormal price or ATR overflows every ratio)."""
    x = _real(value)
    if x is None or x < sys.float_info.min:
        raise Invalid(f"{field} must be a finite number > 0, not subnormal (got {value!r:.40})")
    return x


def _probability(value: Any, field: str) -> float:
    x = _real(value)
    if x is None or not 0.0 <= x <= 1.0:
        raise Invalid(f"{field} must be a number between 0 and 1 (got {value!r:.40})")
    return x


def _jsonable(value: Any) -> str:
    """json.dumps' fallback: datetimes (UTC here) as ISO-8601."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return value.isoformat()


def _chunks(items: list[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
