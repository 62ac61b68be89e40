"""Schema migrations (Alembic): upgrade a database to this code's schema, or check that it is there."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, text

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


def _run(conn: Connection, verb: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = conn
    getattr(command, verb)(config, revision)
