"""Engine construction: SQLite (WAL, busy timeout, IMMEDIATE write transactions) or PostgreSQL.

PostgreSQL connections time out when connecting (libpq connect_timeout), per statement
(statement_timeout) and when the peer vanishes (TCP keepalives), so a database that stops
answering costs a bounded wait, never a hang; pool sizes are set against max_connections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 30_000
WRITE_OPTION = "aifx_write"


@dataclass(frozen=True)
class DatabaseOptions:
    """Connection limits; per process, pool_size + max_overflow connections at most."""

    connect_timeout_s: int = 3
    statement_timeout_ms: int = 5_000
    pool_size: int = 5
    max_overflow: int = 5
    pool_timeout_s: float = 5.0


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection PRAGMAs; hand transaction control to SQLAlchemy (see _sqlite_on_begin)."""
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = FULL")  # an acknowledged commit survives power loss
    cur.execute("PRAGMA foreign_keys = ON")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    """BEGIN IMMEDIATE for write transactions (takes the write lock up front: no upgrade deadlock)."""
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_engine(url: str) -> Engine:
    """SQLite engine usable from many threads; creates the file's directory."""
    parsed = make_url(url)
    database = parsed.database or ""
    kwargs: dict[str, Any] = {}
    if database in ("", ":memory:"):
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _postgres_engine(url: str, o: DatabaseOptions) -> Engine:
    connect_args = {
        "connect_timeout": o.connect_timeout_s,
        "options": f"-c statement_timeout={o.statement_timeout_ms}",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    query_options = make_url(url).query.get("options")
    if query_options:  # e.g. a search_path given in the URL: keep it beside the timeout
        connect_args["options"] = f"{query_options} {connect_args['options']}"
    return create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_size=o.pool_size,
        max_overflow=o.max_overflow,
        pool_timeout=o.pool_timeout_s,
    )


def make_engine(url: str, options: DatabaseOptions | None = None) -> Engine:
    """Engine for a SQLite or PostgreSQL URL (pre-ping on, so dropped connections are replaced)."""
    scheme = url_scheme(url)  # only the scheme: the rest of a URL may carry a password
    try:
        backend = make_url(url).get_backend_name()
    except Exception:  # noqa: BLE001 - SQLAlchemy's message quotes the whole URL
        backend = ""
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        return _postgres_engine(url, options or DatabaseOptions())
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///... or postgresql+psycopg://...")


def url_scheme(url: str) -> str:
    """A database URL's scheme for messages ("(not a URL)" when it has none): never its password."""
    scheme, sep, _ = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,29}", scheme):
        return "(not a URL)"
    return scheme.lower()


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"
