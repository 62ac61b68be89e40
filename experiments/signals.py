"""Signal events: one per bar that trusted candles close, kept for replay (Last-Event-ID) and the latest read.

Shares the engine of an ExperimentStore. The first event of a bar wins (a unique key on pair, timeframe
and bar time), so workers and replicas that score one bar publish it once. Ids become visible in
order (one publisher at a time holds PUBLISH_LOCK until it commits), so followers read by id alone.
On PostgreSQL an insert also sends NOTIFY on CHANNEL in the same transaction (delivered at commit),
so every replica's listener wakes at once; on SQLite subscribers look for a commit in the database files (change_mark).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url

from experiments.db import WRITE_OPTION, is_sqlite
from experiments.records import as_utc, utcnow
from experiments.schema import signal_events
from experiments.store import ExperimentStore

CHANNEL = "aifx_signals"
MAX_REPLAY = 1_000  # events per read: a client far behind reads in pages
# Publishers take this transaction lock before their insert: an id drawn before another is then committed
# before it, so a follower that reads `id > the last it saw` never passes one still in flight.
PUBLISH_LOCK = 0x41494658_5349  # "AIFXSI"


class SignalStore:
    """Signal events over an ExperimentStore's engine."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self._store.engine)

    def publish(self, events: list[tuple[str, str, datetime, dict[str, Any]]]) -> list[int]:
        """Store events (pair, timeframe, bar time, payload), the first of a bar wins; the ids of the new ones."""
        if not events:
            return []
        now = utcnow()
        rows = [
            {"pair": p, "timeframe": tf, "bar_time": as_utc(t), "payload": json.dumps(payload, allow_nan=False),
             "created_at": now}
            for p, tf, t, payload in sorted(events, key=lambda e: (e[0], e[1], e[2]))
        ]  # fmt: skip
        insert = sqlite_insert if self.sqlite else pg_insert
        stmt = insert(signal_events).on_conflict_do_nothing(index_elements=["pair", "timeframe", "bar_time"])
        self._store.ensure_schema()
        ids: list[int] = []
        with self._store.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                if not self.sqlite:  # ids in commit order (SQLite writes one transaction at a time anyway)
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK})
                for row in rows:  # one statement a row: RETURNING of a many-row insert is not ordered on SQLite
                    got = conn.execute(stmt.values(**row).returning(signal_events.c.id)).scalar()
                    if got is not None:
                        ids.append(int(got))
                if ids and not self.sqlite:
                    notify = text("SELECT pg_notify(:channel, :payload)")
                    conn.execute(notify, {"channel": CHANNEL, "payload": str(max(ids))})
        return ids

    def after(self, pair: str | None, timeframe: str | None, after_id: int, limit: int = MAX_REPLAY) -> list[dict]:
        """Events with id > after_id (of one series, or every series when pair is None), oldest first."""
        e = signal_events.c
        stmt = select(signal_events).where(e.id > int(after_id)).order_by(e.id).limit(max(1, min(limit, MAX_REPLAY)))
        if pair is not None:
            stmt = stmt.where(e.pair == pair, e.timeframe == timeframe)
        return self._rows(stmt)

    def latest(self, pair: str, timeframe: str) -> dict[str, Any] | None:
        """The newest event of a series, or None."""
        e = signal_events.c
        stmt = select(signal_events).where(e.pair == pair, e.timeframe == timeframe).order_by(e.id.desc()).limit(1)
        rows = self._rows(stmt)
        return rows[0] if rows else None

    def published(self, pair: str, timeframe: str, times: list[datetime]) -> set[datetime]:
        """Which of these bars of a series have their event already."""
        if not times:
            return set()
        e = signal_events.c
        wanted = {as_utc(t) for t in times}
        stmt = select(e.bar_time).where(e.pair == pair, e.timeframe == timeframe, e.bar_time >= min(wanted),
                                        e.bar_time <= max(wanted))  # fmt: skip
        self._store.ensure_schema()
        with self._store.engine.connect() as conn:
            return {as_utc(t) for t in conn.execute(stmt).scalars()} & wanted

    def change_mark(self) -> tuple[int, ...] | None:
        """SQLite: what changes whenever any worker commits (the database and WAL files' mtimes and sizes);
        None elsewhere. Comparing it costs two stat calls, not a query."""
        path = make_url(self._store.url).database
        if not self.sqlite or not path or path == ":memory:":
            return None
        mark: list[int] = []
        for name in (path, f"{path}-wal"):
            try:
                st = os.stat(name)
            except OSError:
                mark += [0, 0]
                continue
            mark += [st.st_mtime_ns, st.st_size]
        return tuple(mark)

    def newest_bars(self) -> list[tuple[str, str, datetime]]:
        """Each series with its newest event's bar time."""
        e = signal_events.c
        stmt = select(e.pair, e.timeframe, func.max(e.bar_time)).group_by(e.pair, e.timeframe)
        self._store.ensure_schema()
        with self._store.engine.connect() as conn:
            return [(p, tf, as_utc(t)) for p, tf, t in conn.execute(stmt)]

    def newest_id(self) -> int:
        """The largest event id (0 when none)."""
        self._store.ensure_schema()
        with self._store.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(signal_events.c.id), 0))).scalar_one())

    def purge(self, older_than: timedelta) -> int:
        """Delete events stored before now - older_than."""
        self._store.ensure_schema()
        with self._store.engine.begin() as conn:
            done = conn.execute(delete(signal_events).where(signal_events.c.created_at < utcnow() - older_than))
        return int(done.rowcount or 0)

    def _rows(self, stmt: Any) -> list[dict[str, Any]]:
        self._store.ensure_schema()
        with self._store.engine.connect() as conn:
            return [_event(r) for r in conn.execute(stmt)]

    async def notifications(self) -> AsyncIterator[int]:
        """PostgreSQL: the newest event id of each NOTIFY on CHANNEL, forever (a dedicated connection)."""
        import psycopg  # only where PostgreSQL is used

        url = make_url(self._store.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            async for note in conn.notifies():
                yield int(note.payload) if note.payload.isdigit() else 0


def _event(r: Any) -> dict[str, Any]:
    return {"id": int(r.id), "pair": r.pair, "timeframe": r.timeframe, "bar_time": as_utc(r.bar_time).isoformat(),
            "payload": json.loads(r.payload), "created": as_utc(r.created_at).timestamp()}  # fmt: skip
