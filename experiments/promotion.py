"""Promotion policies (issue 13): per challenger, its probation after an automatic switch, and the audit trail
of every recommendation, switch, rollback and confirmation; one caller acts under the lease (experiments.lease).

Shares the engine of an ExperimentStore (so no connection before first use), like EvaluationStore.

A policy is keyed by its challenger version and always judged against whichever version is active,
so several challengers may be watched at once; the database refuses a bad mode, a non-positive or
non-finite threshold, a negative probation and half-set probation state (CHECK constraints).

An action's writes are one transaction (issue 29): `promote` sets the service's active version, starts
the probation, writes the probation's anchor and appends the 'switch' audit row; `finish_probation`
switches back (a rollback), clears the probation, re-arms the policy and appends its audit row. A failure
anywhere leaves none of them: never a switch without its probation and audit row. Every write checks in
its transaction that a lease this caller holds is still its own (the fence). Every method blocks.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from sqlalchemy.exc import IntegrityError

from experiments import validation as v
from experiments.errors import Conflict, Invalid, NotFound
from experiments.lease import LeasedStore
from experiments.records import as_utc, iso, utcnow
from experiments.schema import (
    DECISION_ACTIONS,
    MAX_POLICY_R,
    MAX_PROBATION_BARS,
    POLICY_MODES,
    STATE_LEN,
    promotion_decisions,
    promotion_policy,
)

REASON_LEN = 4000
MAX_FIGURES_CHARS = 65_536
MAX_DECISIONS = 10_000  # rows per decisions() call


class PromotionStore(LeasedStore):
    """Promotion policies with their probation state, the decision audit trail and the acting lease."""

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
        values = _decision_values(action, challenger, incumbent, mode, state, reason, figures)
        with _refused("decision"), self._write() as conn:
            self._fence(conn)
            return _insert_decision(conn, values)

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

    # -- actions: every write of one in a single transaction -----------------------------------

    def promote(
        self,
        challenger: str,
        incumbent: str,
        start_bar: datetime,
        *,
        mode: str,
        state: str,
        reason: str,
        figures: Mapping[str, Any],
        also: Callable[[Connection], Any] | None = None,
    ) -> dict[str, Any]:
        """An automatic switch, all or nothing: active version, probation, also(conn) and the 'switch' audit row."""
        # also(conn): the promoter writes the probation's anchor here. Conflict, nothing written, when the
        # policy's mode is no longer `mode`, a probation already runs, or (under a lease) the lease expired.
        values = _decision_values("switch", challenger, incumbent, mode, state, reason, figures)
        if incumbent == challenger:
            raise Invalid("incumbent must be the version the challenger replaces, not the challenger itself")
        if not isinstance(start_bar, datetime):
            raise Invalid(f"start_bar must be a datetime (got {start_bar!r:.40})")
        p = promotion_policy.c
        probation = (
            update(promotion_policy)
            .where(p.challenger == challenger, p.mode == mode, p.probation_from_version.is_(None))
            .values(probation_from_version=incumbent, probation_started_at=values["at"],
                    probation_start_bar=as_utc(start_bar))
        )  # fmt: skip
        with _refused("switch"), self._write() as conn:
            self._fence(conn)
            self._store.put_active_version(conn, challenger)
            if not conn.execute(probation).rowcount:
                row = _policy_row(conn, challenger)
                raise Conflict(
                    f"the policy of {challenger!r} changed (mode {row.mode!r}, probation from "
                    f"{row.probation_from_version!r}): no switch"
                )
            if also is not None:
                also(conn)
            return _insert_decision(conn, values)

    def finish_probation(
        self,
        action: str,
        challenger: str,
        previous: str,
        *,
        switch_back: bool,
        mode: str,
        state: str,
        reason: str,
        figures: Mapping[str, Any],
    ) -> dict[str, Any]:
        """A probation's end, all or nothing: the switch back (if switch_back), the probation cleared, the audit row."""
        # A rollback re-arms the policy as 'recommend' (no automatic second try). Conflict, nothing written,
        # when no probation of the challenger from previous runs (another caller ended it) or the lease expired.
        if action not in ("rollback", "confirm"):
            raise Invalid(f"action must be rollback or confirm (got {action!r:.40})")
        values = _decision_values(action, challenger, previous, mode, state, reason, figures)
        p = promotion_policy.c
        changes: dict[str, Any] = {"probation_from_version": None, "probation_started_at": None,
                                   "probation_start_bar": None}  # fmt: skip
        if action == "rollback":
            changes |= {"mode": "recommend", "updated_at": values["at"]}
        end = (
            update(promotion_policy)
            .where(p.challenger == challenger, p.probation_from_version == previous)
            .values(**changes)
        )
        with _refused(action), self._write() as conn:
            self._fence(conn)
            if switch_back:
                self._store.put_active_version(conn, previous)
            if not conn.execute(end).rowcount:
                _policy_row(conn, challenger)
                raise Conflict(f"no probation of {challenger!r} from {previous!r} is running: no {action}")
            return _insert_decision(conn, values)


# -- rows -----------------------------------------------------------------------------------------


def _policy_row(conn: Connection, challenger: str) -> Row[Any]:
    """The policy row or NotFound."""
    stmt = select(promotion_policy).where(promotion_policy.c.challenger == challenger)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"challenger {challenger!r} has no promotion policy")
    return row


def _decision_values(
    action: str, challenger: str, incumbent: str, mode: str, state: str, reason: str, figures: Mapping[str, Any]
) -> dict[str, Any]:
    """An audit row's checked values, stamped now."""
    if action not in DECISION_ACTIONS:
        raise Invalid(f"action must be one of {', '.join(DECISION_ACTIONS)} (got {action!r:.40})")
    return {
        "at": utcnow(),
        "action": action,
        "challenger": v.check_version(challenger, "challenger"),
        "incumbent": v.check_version(incumbent, "incumbent"),
        "mode": _check_mode(mode),
        "state": _check_state(state),
        "reason": v.check_text(reason, "reason", REASON_LEN, required=True),
        "figures": _figures_json(figures),
    }


def _insert_decision(conn: Connection, values: Mapping[str, Any]) -> dict[str, Any]:
    """Append an audit row inside the caller's write transaction; returns it."""
    key = conn.execute(promotion_decisions.insert().values(**values)).inserted_primary_key
    assert key is not None  # a single-row INSERT always has one
    row = conn.execute(select(promotion_decisions).where(promotion_decisions.c.id == key[0])).one()
    return _decision_dict(row)


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
