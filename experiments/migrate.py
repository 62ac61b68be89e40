"""Schema migrations (Alembic): upgrade a database to this code's schema, or check that it is there."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from experiments.db import WRITE_OPTION, is_sqlite
from experiments.errors import SchemaMismatch
from experiments.schema import SCHEMA_VERSION

SCRIPTS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x41494658  # "AIFX": one migrating process at a time on PostgreSQL


def current(conn: Connection) -> str | None:
    """The database's Alembic revision (None: empty, or created before migrations existed)."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Run every missing migration in one transaction; returns the revision reached."""
    with engine.connect() as conn, conn.execution_options(**{WRITE_OPTION: True}).begin():
        if not is_sqlite(engine):
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        if current(conn) is None and inspect(conn).has_table("experiments"):
            _run(conn, "stamp", "0001")  # created by the pre-migration code: its tables are revision 0001
        _run(conn, "upgrade", "head")
        return str(current(conn))


def check(engine: Engine) -> None:
    """SchemaMismatch unless the database is at this code's revision."""
    with engine.connect() as conn:
        found = current(conn)
    if found != SCHEMA_VERSION:
        raise SchemaMismatch(
            f"database schema is at revision {found or 'none'}, this code needs {SCHEMA_VERSION}: "
            "run `python -m experiments migrate` (make migrate) with a user that may change the schema"
        )


def wait(engine: Engine, timeout_s: float, every_s: float = 2.0, say: Callable[[str], None] = print) -> str:
    """This code's revision once the database is at it (another process migrates); after timeout_s, the last error."""
    # For a pod that must not serve before the migration Job ran (deploy/k8s/): the serving user's rights
    # suffice. It says what it waits for at the first miss and then every 30 s, not at every check.
    deadline = time.monotonic() + timeout_s
    said_at = float("-inf")
    while True:
        try:
            check(engine)
            return SCHEMA_VERSION
        except (SchemaMismatch, SQLAlchemyError) as exc:  # not migrated, or the database does not answer (yet)
            if time.monotonic() >= deadline:
                raise
            if time.monotonic() - said_at >= 30.0:
                say(f"waiting for the schema: {first_line(exc)}")
                said_at = time.monotonic()
        time.sleep(max(0.0, min(every_s, deadline - time.monotonic())))


def first_line(exc: BaseException) -> str:
    """The first line of a database error (the driver's message, without SQLAlchemy's statement dump)."""
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]


def _run(conn: Connection, verb: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    getattr(command, verb)(config, revision)
