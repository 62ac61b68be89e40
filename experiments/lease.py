"""The acting lease (issue 13): of any number of workers and replicas, one acts at a time, and its writes are fenced.

`try_act(name)` takes a lease, a row of `promotion_lease` won by one conditional upsert (INSERT ... ON
CONFLICT DO UPDATE ... WHERE expires_at <= now); on PostgreSQL the upsert locks the row, on SQLite the
write transaction is BEGIN IMMEDIATE, so of any number of concurrent callers exactly one gets it, and the
others skip their turn at once. A lease outlives its holder only until it expires (a crashed worker blocks
nobody for longer than `ttl`), and it is dropped when the holder's block ends. While a caller holds a
lease, the writes a subclass makes call `_fence(conn)` in their transaction: a holder that stalled past its
ttl gets Conflict and writes nothing, so a second actor's writes can never interleave with its own.
`acting` is `try_act` for a coroutine (issue 29): the lease is taken and dropped in a thread, never on the
event loop. Lease times come from the callers' clocks: keep `ttl` far above the clock skew between replicas.
"""

from __future__ import annotations

import asyncio
import logging
import math
import numbers
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from experiments import validation as v
from experiments.db import is_sqlite
from experiments.errors import Conflict, Invalid
from experiments.records import as_utc, iso, utcnow
from experiments.schema import ID_LEN, promotion_lease
from experiments.store import ExperimentStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = timedelta(seconds=60)
MAX_LEASE_TTL = timedelta(days=1)

# Leases this context holds: (database url, lease name, holder). A ContextVar, so a lease taken in one
# thread or asyncio task fences only that thread's or task's writes (asyncio.to_thread carries it along).
_held: ContextVar[tuple[tuple[str, str, str], ...]] = ContextVar("aifx_promotion_leases", default=())


class LeasedStore:
    """A store on an ExperimentStore's engine (no connection before first use) whose writes a held lease fences."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store

    # -- connections (the experiment store's transactions: BEGIN IMMEDIATE for writes on SQLite) ----

    def _write(self) -> AbstractContextManager[Connection]:
        return self._store._write()

    def _read(self) -> AbstractContextManager[Connection]:
        return self._store._read()

    @property
    def _sqlite(self) -> bool:
        return is_sqlite(self._store.engine)

    def _insert(self, table: Any) -> Any:
        return (sqlite_insert if self._sqlite else pg_insert)(table)

    # -- the lease ---------------------------------------------------------------------------

    @contextmanager
    def try_act(self, name: str = "promotion", ttl: timedelta | float = DEFAULT_LEASE_TTL) -> Iterator[bool]:
        """True when this caller won the lease `name` (held for the block, at most ttl; never waits, not re-entrant)."""
        name = _check_lease_name(name)
        holder = self._acquire(name, ttl)
        try:
            with _holding(self._store.url, name, holder) as won:
                yield won
        finally:
            if holder is not None:
                self._release(name, holder)

    @asynccontextmanager
    async def acting(self, name: str = "promotion", ttl: timedelta | float = DEFAULT_LEASE_TTL) -> AsyncIterator[bool]:
        """try_act for a coroutine: the block's calls through asyncio.to_thread are fenced like try_act's."""
        name = _check_lease_name(name)
        # A task cancelled while this thread runs may leave the lease held until it expires (ttl).
        holder = await asyncio.to_thread(self._acquire, name, ttl)
        try:
            with _holding(self._store.url, name, holder) as won:
                yield won
        finally:
            if holder is not None:
                await asyncio.to_thread(self._release, name, holder)

    def lease(self, name: str = "promotion") -> dict[str, Any] | None:
        """The current lease `name` ({"name", "holder", "acquired_at", "expires_at", "expired"}) or None."""
        stmt = select(promotion_lease).where(promotion_lease.c.name == _check_lease_name(name))
        with self._read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        expires = as_utc(row.expires_at)
        return {"name": row.name, "holder": row.holder, "acquired_at": iso(row.acquired_at),
                "expires_at": iso(expires), "expired": expires <= utcnow()}  # fmt: skip

    def _acquire(self, name: str, ttl: timedelta | float) -> str | None:
        """Our holder id when the lease `name` was free or expired and is now ours for ttl, else None."""
        span = _check_ttl(ttl)
        holder = _holder()
        now = utcnow()
        ins = self._insert(promotion_lease).values(name=name, holder=holder, acquired_at=now, expires_at=now + span)
        stmt = ins.on_conflict_do_update(
            index_elements=[promotion_lease.c.name],
            set_={k: ins.excluded[k] for k in ("holder", "acquired_at", "expires_at")},
            where=promotion_lease.c.expires_at <= now,
        ).returning(promotion_lease.c.holder)
        with self._write() as conn:
            return holder if conn.execute(stmt).scalar() == holder else None

    def _release(self, name: str, holder: str) -> None:
        """Drop our lease; if the database is unreachable it simply expires."""
        lc = promotion_lease.c
        try:
            with self._write() as conn:
                conn.execute(delete(promotion_lease).where(lc.name == name, lc.holder == holder))
        except SQLAlchemyError as exc:
            log.warning("lease %r not released (%s); it expires by itself", name, type(exc).__name__)

    def _fence(self, conn: Connection) -> None:
        """Conflict unless every lease this context holds on this database is still ours and unexpired."""
        lc = promotion_lease.c
        now = utcnow()
        for url, name, holder in _held.get():
            if url != self._store.url:
                continue
            row = conn.execute(select(lc.holder, lc.expires_at).where(lc.name == name).with_for_update()).first()
            if row is None or row.holder != holder or as_utc(row.expires_at) <= now:
                raise Conflict(f"the {name!r} lease expired before this write (held longer than its ttl); "
                               "nothing was written")  # fmt: skip


@contextmanager
def _holding(url: str, name: str, holder: str | None) -> Iterator[bool]:
    """Whether the lease was won; while the block runs, this context's writes are fenced by it."""
    if holder is None:
        yield False
        return
    token = _held.set((*_held.get(), (url, name, holder)))
    try:
        yield True
    finally:
        _held.reset(token)


def _check_lease_name(value: Any) -> str:
    return v.check_id(value, "lease name")  # 1-64 characters, the width of promotion_lease.name


def _check_ttl(value: Any) -> timedelta:
    """A positive duration of at most MAX_LEASE_TTL (a number is seconds)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
        value = timedelta(seconds=float(value))
    if not isinstance(value, timedelta) or not timedelta(0) < value <= MAX_LEASE_TTL:
        raise Invalid(f"ttl must be a positive duration of at most {MAX_LEASE_TTL} (got {value!r:.40})")
    return value


def _holder() -> str:
    """This caller's lease id: host, process and a random part (unique per try_act call)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:16]}"[:ID_LEN]
