"""The base of ExperimentStore's parts: one database's engine per process, its schema check and transactions.

Creating one opens no connection: the schema is checked (or, with auto_migrate, brought up to date by the
Alembic migrations) on first use, so a process starts while its database is down.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from experiments.db import WRITE_OPTION, DatabaseOptions, is_sqlite, make_engine
from experiments.defaults import default_database_url


class Database:
    """One database: this process's engine, the schema checked (or migrated) on first use, and transactions."""

    def __init__(
        self, url: str | None = None, auto_migrate: bool = True, options: DatabaseOptions | None = None
    ) -> None:
        self.url = url or default_database_url()
        self.auto_migrate = auto_migrate
        self._engine = make_engine(self.url, options)
        self._pid = os.getpid()
        self._ready = False
        self._ready_lock = threading.Lock()
        self._attempts = 0  # schema attempts so far, and the error of the last one that failed
        self._failure: Exception | None = None

    @property
    def engine(self) -> Engine:
        """This process's engine (a forked child drops the parent's pooled connections)."""
        if os.getpid() != self._pid:
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        return self._engine

    def ensure_schema(self) -> None:
        """Migrate (auto_migrate) or check the schema, once per store; retried after a failure.

        A thread that waited while another attempt failed gets that failure at once instead of
        queueing its own attempt: with a database that does not answer, each attempt costs the
        connect timeout, and callers (requests, the write-behind queue, the resolver) would wait in line.
        """
        if self._ready:
            return
        from experiments import migrate  # Alembic, loaded only by a process that uses the database

        seen = self._attempts
        with self._ready_lock:
            if self._ready:
                return
            if self._attempts != seen and self._failure is not None:
                raise self._failure.with_traceback(None)
            try:
                if self.auto_migrate:
                    migrate.upgrade(self.engine)
                else:
                    migrate.check(self.engine)
            except Exception as exc:
                self._failure = exc
                raise
            finally:
                self._attempts += 1
            self._ready, self._failure = True, None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (for the package's own modules, e.g. experiments/recording.py)."""
        with self._write() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction, committed on exit (BEGIN IMMEDIATE on SQLite)."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; snapshot=True gives one consistent view on PostgreSQL too."""
        self.ensure_schema()
        with self.engine.connect() as conn:
            if snapshot and not is_sqlite(self._engine):
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    def schema_version(self) -> str | None:
        """The Alembic revision recorded in the database."""
        with self._read() as conn:
            from experiments.migrate import current

            return current(conn)
