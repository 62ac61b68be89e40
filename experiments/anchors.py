"""Anchored comparisons (issue 26): per (a, b, scope) the state of a confidence sequence started at a fixed
point, kept outside retention so its running block sums outlive the evaluation rows they came from.

Shares the engine of an ExperimentStore, like EvaluationStore and PromotionStore. The state is opaque
JSON here (aifx.anchored reads and writes it; experiments imports nothing of aifx). A decision, once
written, stands: save() never clears or changes it; only start() (a new anchor, e.g. after an admin
reset) replaces the row. Nothing here deletes an anchor.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from experiments import validation as v
from experiments.db import is_sqlite
from experiments.errors import Invalid, NotFound
from experiments.records import as_utc, iso, utcnow
from experiments.schema import ID_LEN, STATE_LEN, comparison_anchors
from experiments.store import ExperimentStore

MAX_STATE_CHARS = 1_000_000  # a state holds a few numbers per series: far below this


class AnchorStore:
    """The anchored comparisons: start (or restart), read, save progress; never delete."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store

    def _insert(self) -> Any:
        return (sqlite_insert if is_sqlite(self._store.engine) else pg_insert)(comparison_anchors)

    def start(
        self,
        a: str,
        b: str,
        scope: str,
        alpha: float,
        state: Mapping[str, Any],
        decisions_spent: int,
        started_at: datetime | None = None,
        conn: Connection | None = None,
    ) -> dict[str, Any]:
        """Create the anchor (a, b, scope) or replace it with a fresh one (no decision), in conn if given."""
        now = utcnow()
        values = {
            **_key(a, b, scope),
            "started_at": as_utc(started_at) if started_at is not None else now,
            "alpha": _check_alpha(alpha),
            "state": _state_json(state),
            "decision": None,
            "decided_at": None,
            "updated_at": now,
            "decisions_spent": _check_spent(decisions_spent),
        }
        ins = self._insert().values(**values)
        keys = ("a", "b", "scope")
        stmt = ins.on_conflict_do_update(
            index_elements=[comparison_anchors.c[k] for k in keys],
            set_={k: ins.excluded[k] for k in values if k not in keys},
        )
        if conn is not None:
            conn.execute(stmt)
            return _dict(_row(conn, a, b, scope))
        with self._store._write() as own:
            own.execute(stmt)
            return _dict(_row(own, a, b, scope))

    def get(self, a: str, b: str, scope: str = "*") -> dict[str, Any] | None:
        """The anchor (a, b, scope) with its state parsed, or None."""
        key = _key(a, b, scope)
        c = comparison_anchors.c
        stmt = select(comparison_anchors).where(c.a == key["a"], c.b == key["b"], c.scope == key["scope"])
        with self._store._read() as conn:
            row = conn.execute(stmt).first()
        return _dict(row) if row is not None else None

    def save(self, a: str, b: str, scope: str, state: Mapping[str, Any], decision: str | None) -> dict[str, Any]:
        """Store new progress; the first decision is kept with its time, a later one is ignored (NotFound: no row)."""
        if decision is not None and (not isinstance(decision, str) or not 1 <= len(decision) <= STATE_LEN):
            raise Invalid(f"decision must be 1-{STATE_LEN} characters or None (got {decision!r:.40})")
        with self._store._write() as conn:
            row = _row(conn, a, b, scope, lock=True)
            now = utcnow()
            values: dict[str, Any] = {"state": _state_json(state), "updated_at": now}
            if row.decision is None and decision is not None:
                values |= {"decision": decision, "decided_at": now}
            c = comparison_anchors.c
            conn.execute(update(comparison_anchors).where(c.a == a, c.b == b, c.scope == scope).values(**values))
            return _dict(_row(conn, a, b, scope))

    def anchors(self, b: str | None = None) -> list[dict[str, Any]]:
        """Every anchor (of challenger b if given), by (a, b, scope)."""
        c = comparison_anchors.c
        stmt = select(comparison_anchors).order_by(c.a, c.b, c.scope)
        if b is not None:
            stmt = stmt.where(c.b == v.check_version(b, "b"))
        with self._store._read() as conn:
            return [_dict(r) for r in conn.execute(stmt)]

    def next_index(self, b: str) -> int:
        """The j of challenger b's next anchor: one more than its anchors' largest, 0 for its first."""
        stmt = select(func.max(comparison_anchors.c.decisions_spent)).where(
            comparison_anchors.c.b == v.check_version(b, "b")
        )
        with self._store._read() as conn:
            top = conn.execute(stmt).scalar()
        return 0 if top is None else int(top) + 1


def _key(a: str, b: str, scope: str) -> dict[str, str]:
    key = {"a": v.check_version(a, "a"), "b": v.check_version(b, "b"), "scope": _check_scope(scope)}
    if key["a"] == key["b"]:
        raise Invalid("a and b must be two different versions")
    return key


def _row(conn: Connection, a: str, b: str, scope: str, lock: bool = False) -> Row[Any]:
    c = comparison_anchors.c
    stmt = select(comparison_anchors).where(c.a == a, c.b == b, c.scope == scope)
    row = conn.execute(stmt.with_for_update() if lock else stmt).first()
    if row is None:
        raise NotFound(f"no anchored comparison of {b!r} against {a!r} ({scope!r})")
    return row


def _dict(row: Row[Any]) -> dict[str, Any]:
    return {
        "a": row.a,
        "b": row.b,
        "scope": row.scope,
        "started_at": iso(row.started_at),
        "alpha": float(row.alpha),
        "state": json.loads(row.state),
        "decision": row.decision,
        "decided_at": iso(row.decided_at) if row.decided_at is not None else None,
        "updated_at": iso(row.updated_at),
        "decisions_spent": int(row.decisions_spent),
    }


def _check_alpha(value: Any) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    x = float(value) if ok else math.nan
    if not (math.isfinite(x) and 0.0 < x < 1.0):
        raise Invalid(f"alpha must be a number in (0, 1) (got {value!r:.40})")
    return x


def _check_spent(value: Any) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or int(value) < 0:
        raise Invalid(f"decisions_spent must be an integer >= 0 (got {value!r:.40})")
    return int(value)


def _state_json(state: Any) -> str:
    return v.json_object(state, "state", MAX_STATE_CHARS)


def _check_scope(value: Any) -> str:
    """'*' (every series) or a series name: 1-64 printable characters without spaces."""
    if not isinstance(value, str) or not 1 <= len(value) <= ID_LEN or not value.isprintable() or " " in value:
        raise Invalid(f"scope must be 1-{ID_LEN} printable characters without spaces (got {value!r:.40})")
    return value
