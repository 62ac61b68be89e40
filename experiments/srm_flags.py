"""Sample-ratio-mismatch flags (issue 26): the decision of an experiment's anytime-valid SRM test, kept.

The test (aifx.srm) is valid for stopping at the first read where its e-value reaches 1 / alpha; the e-value
may fall back later. So the first flag is written here with the check at that read and stands, whatever
later reads say and across restarts, until an admin reset. A reset clears it and records the users counted
per variant at that moment (`baseline`): the test restarts on the users counted beyond them, a fresh
martingale. Shares the engine of an ExperimentStore, like AnchorStore; the check is opaque JSON here.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from experiments import validation as v
from experiments.db import is_sqlite
from experiments.definitions import experiment_row
from experiments.errors import Invalid
from experiments.records import iso, utcnow
from experiments.schema import srm_flags
from experiments.store import ExperimentStore

MAX_JSON_CHARS = 10_000  # a check holds a few numbers and strings


class SrmStore:
    """Per experiment: the SRM flag that stands (first flag kept) and the users counted at the last reset."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store

    def _insert(self) -> Any:
        return (sqlite_insert if is_sqlite(self._store.engine) else pg_insert)(srm_flags)

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        """The experiment's row (flag, baseline) parsed, or None when it never flagged nor was reset."""
        with self._store._read() as conn:
            row = _row(conn, v.check_id(experiment_id))
        return _dict(row) if row is not None else None

    def flag(self, experiment_id: str, check: Mapping[str, Any]) -> dict[str, Any]:
        """Record the first flag with the check that raised it; a flag already standing is kept as it was.
        NotFound for an unknown experiment."""
        eid = v.check_id(experiment_id)
        now = utcnow()
        flag = v.json_object(check, "check", MAX_JSON_CHARS)
        ins = self._insert().values(experiment_id=eid, flagged_at=now, flag=flag, updated_at=now)
        stmt = ins.on_conflict_do_update(
            index_elements=[srm_flags.c.experiment_id],
            set_={"flagged_at": ins.excluded.flagged_at, "flag": ins.excluded.flag, "updated_at": now},
            where=srm_flags.c.flagged_at.is_(None),  # concurrent readers: the first commit wins
        )
        with self._store._write() as conn:
            experiment_row(conn, eid)  # 404 for an unknown experiment
            conn.execute(stmt)
            return _dict(_existing(conn, eid))

    def reset(self, experiment_id: str, users: Mapping[str, int]) -> dict[str, Any]:
        """Clear the flag and restart the test beyond `users` (the users per variant counted now)."""
        eid = v.check_id(experiment_id)
        if not all(isinstance(k, str) and isinstance(n, numbers.Integral) and n >= 0 for k, n in users.items()):
            raise Invalid("users must map each variant to a count >= 0")
        now = utcnow()
        baseline = v.json_object(dict(users), "users", MAX_JSON_CHARS)
        values = {"flagged_at": None, "flag": None, "baseline": baseline, "reset_at": now}
        ins = self._insert().values(experiment_id=eid, updated_at=now, **values)
        stmt = ins.on_conflict_do_update(index_elements=[srm_flags.c.experiment_id], set_={**values, "updated_at": now})
        with self._store._write() as conn:
            experiment_row(conn, eid)  # 404 for an unknown experiment
            conn.execute(stmt)
            return _dict(_existing(conn, eid))


def _row(conn: Connection, experiment_id: str) -> Row[Any] | None:
    return conn.execute(select(srm_flags).where(srm_flags.c.experiment_id == experiment_id)).first()


def _existing(conn: Connection, experiment_id: str) -> Row[Any]:
    row = _row(conn, experiment_id)
    assert row is not None  # written in this transaction
    return row


def _dict(row: Row[Any]) -> dict[str, Any]:
    return {
        "experiment_id": row.experiment_id,
        "flagged_at": iso(row.flagged_at),
        "flag": json.loads(row.flag) if row.flag is not None else None,
        "baseline": json.loads(row.baseline) if row.baseline is not None else None,
        "reset_at": iso(row.reset_at),
        "updated_at": iso(row.updated_at),
    }
