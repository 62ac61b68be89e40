"""Promotion policies (issue 13): per challenger, its probation after an automatic switch, the audit trail
of every recommendation, switch, rollback and confirmation, and the lease that lets one caller act.

Shares the engine of an ExperimentStore (so no connection before first use), like EvaluationStore.

A policy is keyed by its challenger version and always judged against whichever version is active,
so several challengers may be watched at once; the database refuses a bad mode, a non-positive or
non-finite threshold, a negative probation and half-set probation state (CHECK constraints).

One actor across workers and replicas: `try_act(name)` takes a lease, a row of `promotion_lease`
won by one conditional upsert (INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now); on
PostgreSQL the upsert locks the row, on SQLite the write transaction is BEGIN IMMEDIATE, so of any
number of concurrent callers exactly one gets it, and the others skip their turn at once. A lease
outlives its holder only until it expires (a crashed worker blocks nobody for longer than `ttl`),
and it is dropped when the holder's block ends. While a caller holds a lease, the writes it makes
through this store (record_decision, start_probation, end_probation) check in their own transaction
that the lease is still theirs and unexpired (a fencing check): a holder that stalled past its ttl
gets Conflict and writes nothing, so a second actor's audit row can never interleave with its own.
Lease times come from the callers' clocks: keep `ttl` far above the clock skew between replicas.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from experiments import validation as v
from experiments.db import is_sqlite
from experiments.errors import Conflict, Invalid, NotFound
from experiments.records import as_utc, iso, utcnow
from experiments.schema import (
    DECISION_ACTIONS,
    ID_LEN,
    MAX_POLICY_R,
    MAX_PROBATION_BARS,
    POLICY_MODES,
    STATE_LEN,
    promotion_decisions,
    promotion_lease,
    promotion_policy,
)
from experiments.store import ExperimentStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = timedelta(seconds=60)
MAX_LEASE_TTL = timedelta(days=1)
REASON_LEN = 4000
MAX_FIGURES_CHARS = 65_536
MAX_DECISIONS = 10_000  # rows per decisions() call

# Leases this context holds: (database url, lease name, holder). A ContextVar, so a lease taken in
# one thread or asyncio task fences only that thread's or task's writes.
_held: ContextVar[tuple[tuple[str, str, str], ...]] = ContextVar("aifx_promotion_leases", default=())


class PromotionStore:
    """Promotion policies with their probation state, the decision audit trail and the acting lease."""

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

    # -- policies ----------------------------------------------------------------------------

    def set_policy(
        self, challenger: str, mode: str, min_effect_r: float, max_drawdown_r: float, probation_bars: int
    ) -> dict[str, Any]:
        """Create or replace a challenger's policy (a running probation is kept); returns the policy."""
        values = {
            "challenger": v.check_version(challenger, "challenger"),
            "mode": _check_mode(mode),
            "min_effect_r": _check_r(min_effect_r, "min_effect_r"),
            "max_drawdown_r": _check_r(max_drawdown_r, "max_drawdown_r"),
            "probation_bars": _check_bars(probation_bars),
            "updated_at": utcnow(),
        }
        ins = self._insert(promotion_policy).values(**values)
        stmt = ins.on_conflict_do_update(
            index_elements=[promotion_policy.c.challenger],
            set_={k: ins.excluded[k] for k in values if k != "challenger"},
        )
        with _refused("policy"), self._write() as conn:
            conn.execute(stmt)
            return _policy_dict(_policy_row(conn, challenger))

    def get_policy(self, challenger: str) -> dict[str, Any] | None:
        """A challenger's policy, or None when it has none."""
        v.check_version(challenger, "challenger")
        stmt = select(promotion_policy).where(promotion_policy.c.challenger == challenger)
        with self._read() as conn:
            row = conn.execute(stmt).first()
        return _policy_dict(row) if row is not None else None

    def policies(self) -> list[dict[str, Any]]:
        """Every policy, by challenger."""
        stmt = select(promotion_policy).order_by(promotion_policy.c.challenger)
        with self._read() as conn:
            return [_policy_dict(r) for r in conn.execute(stmt)]

    def delete_policy(self, challenger: str) -> None:
        """Remove a challenger's policy, probation included (NotFound when it has none)."""
        v.check_version(challenger, "challenger")
        with self._write() as conn:
            gone = conn.execute(delete(promotion_policy).where(promotion_policy.c.challenger == challenger))
            if not gone.rowcount:
                raise NotFound(f"challenger {challenger!r} has no promotion policy")

    # -- probation ---------------------------------------------------------------------------

    def start_probation(self, challenger: str, from_version: str, start_bar: datetime) -> dict[str, Any]:
        """Record that an automatic switch replaced from_version; probation counts bars from start_bar.

        NotFound without a policy, Conflict when a probation of this challenger is already running.
        """
        v.check_version(challenger, "challenger")
        v.check_version(from_version, "from_version")
        if from_version == challenger:
            raise Invalid("from_version must be the version the challenger replaced, not the challenger itself")
        if not isinstance(start_bar, datetime):
            raise Invalid(f"start_bar must be a datetime (got {start_bar!r:.40})")
        p = promotion_policy.c
        stmt = (
            update(promotion_policy)
            .where(p.challenger == challenger, p.probation_from_version.is_(None))
            .values(probation_from_version=from_version, probation_started_at=utcnow(),
                    probation_start_bar=as_utc(start_bar))
        )  # fmt: skip
        with _refused("probation"), self._write() as conn:
            self._fence(conn)
            if not conn.execute(stmt).rowcount:
                row = _policy_row(conn, challenger)
                raise Conflict(
                    f"a probation of {challenger!r} is already running (from {row.probation_from_version!r} "
                    f"since {iso(row.probation_started_at)})"
                )
            return _policy_dict(_policy_row(conn, challenger))

    def end_probation(self, challenger: str) -> dict[str, Any]:
        """Clear a challenger's probation (after a rollback or a confirmation); returns the policy.

        NotFound without a policy, Conflict when no probation is running (another caller ended it).
        """
        v.check_version(challenger, "challenger")
        p = promotion_policy.c
        stmt = (
            update(promotion_policy)
            .where(p.challenger == challenger, p.probation_from_version.is_not(None))
            .values(probation_from_version=None, probation_started_at=None, probation_start_bar=None)
        )
        with self._write() as conn:
            self._fence(conn)
            if not conn.execute(stmt).rowcount:
                _policy_row(conn, challenger)
                raise Conflict(f"no probation of {challenger!r} is running")
            return _policy_dict(_policy_row(conn, challenger))

    # -- audit trail -------------------------------------------------------------------------

    def record_decision(
        self,
        action: str,
        challenger: str,
        incumbent: str,
        mode: str,
        state: str,
        reason: str,
        figures: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Append an audit row (figures: a JSON object; non-finite numbers are stored as null); returns it."""
        if action not in DECISION_ACTIONS:
            raise Invalid(f"action must be one of {', '.join(DECISION_ACTIONS)} (got {action!r:.40})")
        values = {
            "at": utcnow(),
            "action": action,
            "challenger": v.check_version(challenger, "challenger"),
            "incumbent": v.check_version(incumbent, "incumbent"),
            "mode": _check_mode(mode),
            "state": _check_state(state),
            "reason": v.check_text(reason, "reason", REASON_LEN, required=True),
            "figures": _figures_json(figures),
        }
        with _refused("decision"), self._write() as conn:
            self._fence(conn)
            key = conn.execute(promotion_decisions.insert().values(**values)).inserted_primary_key
            assert key is not None  # a single-row INSERT always has one
            new_id = key[0]
            row = conn.execute(select(promotion_decisions).where(promotion_decisions.c.id == new_id)).one()
        return _decision_dict(row)

    def decisions(
        self, limit: int = 100, since: datetime | None = None, challenger: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit rows newest first: at most `limit`, at or after `since`, of one challenger if given."""
        ok = isinstance(limit, numbers.Integral) and not isinstance(limit, bool) and 1 <= limit <= MAX_DECISIONS
        if not ok:
            raise Invalid(f"limit must be an integer from 1 to {MAX_DECISIONS} (got {limit!r:.40})")
        d = promotion_decisions.c
        stmt = select(promotion_decisions).order_by(d.at.desc(), d.id.desc()).limit(int(limit))
        if since is not None:
            if not isinstance(since, datetime):
                raise Invalid(f"since must be a datetime (got {since!r:.40})")
            stmt = stmt.where(d.at >= as_utc(since))
        if challenger is not None:
            stmt = stmt.where(d.challenger == v.check_version(challenger, "challenger"))
        with self._read() as conn:
            return [_decision_dict(r) for r in conn.execute(stmt)]

    # -- the acting lease --------------------------------------------------------------------

    @contextmanager
    def try_act(self, name: str = "promotion", ttl: timedelta | float = DEFAULT_LEASE_TTL) -> Iterator[bool]:
        """Yield True when this caller won the lease `name` (held for the block, at most ttl), else False.

        Never waits for another holder. Inside the block this store's writes check the lease is still
        held (Conflict when it expired and may have been taken over). Nested use with the same name
        yields False: a lease is not re-entrant.
        """
        name = _check_lease_name(name)
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
            won = conn.execute(stmt).scalar() == holder
        if not won:
            yield False
            return
        token = _held.set((*_held.get(), (self._store.url, name, holder)))
        try:
            yield True
        finally:
            _held.reset(token)
            self._release(name, holder)

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


# -- rows -----------------------------------------------------------------------------------------


def _policy_row(conn: Connection, challenger: str) -> Row[Any]:
    """The policy row or NotFound."""
    stmt = select(promotion_policy).where(promotion_policy.c.challenger == challenger)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"challenger {challenger!r} has no promotion policy")
    return row


def _policy_dict(row: Row[Any]) -> dict[str, Any]:
    """A policy row as a plain dict (timestamps as ISO strings in UTC)."""
    return {
        "challenger": row.challenger,
        "mode": row.mode,
        "min_effect_r": float(row.min_effect_r),
        "max_drawdown_r": float(row.max_drawdown_r),
        "probation_bars": int(row.probation_bars),
        "updated_at": iso(row.updated_at),
        "probation_from_version": row.probation_from_version,
        "probation_started_at": iso(row.probation_started_at),
        "probation_start_bar": iso(row.probation_start_bar),
    }


def _decision_dict(row: Row[Any]) -> dict[str, Any]:
    """An audit row as a plain dict (figures parsed back into an object)."""
    return {
        "id": int(row.id),
        "at": iso(row.at),
        "action": row.action,
        "challenger": row.challenger,
        "incumbent": row.incumbent,
        "mode": row.mode,
        "state": row.state,
        "reason": row.reason,
        "figures": json.loads(row.figures),
    }


@contextmanager
def _refused(what: str) -> Iterator[None]:
    """A CHECK the checks here missed becomes Invalid (HTTP 422), never a raw database error."""
    try:
        yield
    except IntegrityError as exc:
        raise Invalid(f"the database refused this {what}: {str(exc.orig).splitlines()[0]:.200}") from exc


# -- checks ---------------------------------------------------------------------------------------


def _check_mode(value: Any) -> str:
    if value not in POLICY_MODES:
        raise Invalid(f"mode must be one of {', '.join(POLICY_MODES)} (got {value!r:.40})")
    return str(value)


def _check_r(value: Any, field: str) -> float:
    """A finite number in (0, MAX_POLICY_R], in R (risk units per bar)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    if not (math.isfinite(x) and 0.0 < x <= MAX_POLICY_R):
        raise Invalid(f"{field} must be a finite number > 0 and at most {MAX_POLICY_R} (got {value!r:.40})")
    return x


def _check_bars(value: Any) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or not 0 <= int(value) <= MAX_PROBATION_BARS:
        raise Invalid(f"probation_bars must be an integer from 0 to {MAX_PROBATION_BARS} (got {value!r:.40})")
    return int(value)


def _check_state(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= STATE_LEN or not value.isprintable():
        raise Invalid(f"state must be 1-{STATE_LEN} printable characters (got {value!r:.40})")
    return value


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


def _figures_json(figures: Any) -> str:
    """The figures as a JSON object of at most MAX_FIGURES_CHARS characters."""
    if not isinstance(figures, Mapping):
        raise Invalid(f"figures must be a mapping of names to values (got {type(figures).__name__})")
    text = json.dumps(_plain(figures, "figures"), allow_nan=False, separators=(",", ":"))
    if len(text) > MAX_FIGURES_CHARS:
        raise Invalid(f"figures must be at most {MAX_FIGURES_CHARS} characters of JSON (got {len(text)})")
    return text


def _plain(value: Any, where: str) -> Any:
    """JSON-ready copy: numpy scalars as Python numbers, NaN and infinities as None, datetimes as ISO."""
    if value is None or isinstance(value, bool | str):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy scalars, np.bool_ included
        item = value.item()
        if item is not value and not isinstance(item, list | tuple):
            return _plain(item, where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        return x if math.isfinite(x) else None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise Invalid(f"{where} must have string keys")
        return {k: _plain(x, f"{where}.{k}") for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(x, f"{where}[{i}]") for i, x in enumerate(value)]
    raise Invalid(f"{where}: {type(value).__name__} is not a JSON value")
