"""Alembic steps for migration tests: one command in one transaction, as experiments.migrate runs it."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, inspect

from experiments.db import WRITE_OPTION
from experiments.migrate import SCRIPTS, current


def alembic(engine: Engine, verb: str, revision: str) -> str | None:
    """Run `upgrade` or `downgrade` to revision in one transaction; the revision the database is at after it."""
    with engine.connect() as conn, conn.execution_options(**{WRITE_OPTION: True}).begin():
        config = Config()
        config.set_main_option("script_location", str(SCRIPTS))
        config.attributes["connection"] = conn
        getattr(command, verb)(config, revision)
        return current(conn)


def tables(engine: Engine) -> set[str]:
    """The database's table names."""
    with engine.connect() as conn:
        return set(inspect(conn).get_table_names())
