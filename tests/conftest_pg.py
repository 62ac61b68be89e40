"""Database fixtures for the experiment store: a SQLite file and an isolated PostgreSQL schema.

Use from tests/conftest.py with
    from tests.conftest_pg import db_url, make_store, pg_server_url, pg_url, store  # noqa: F401
or from a test module with `pytest_plugins = ["tests.conftest_pg"]`.

PostgreSQL comes from $AIFX_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
When it is unreachable the PostgreSQL tests skip locally but FAIL when $CI is set, because CI
always runs them. Every test gets its own schema (via search_path), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from experiments.store import ExperimentStore

PG_URL_ENV = "AIFX_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def in_ci() -> bool:
    """Whether $CI is set to a true-ish value (as CI services do)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _probe(url: str) -> str | None:
    """None when PostgreSQL answers at url, else the error message."""
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:  # any failure means "not reachable" here
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The PostgreSQL URL under test; skips locally, fails in CI, when unreachable."""
    url = os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
    error = _probe(url)
    if error is not None:
        message = f"PostgreSQL unreachable at {make_url(url)!r} (${PG_URL_ENV}): {error}"
        if in_ci():
            pytest.fail(f"{message}; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(message)
    return url


def _with_search_path(url: str, schema: str) -> str:
    """url whose connections use `schema` first (libpq `options=-csearch_path=...`)."""
    parsed = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


def _fresh_schema(pg_server_url: str) -> Iterator[str]:
    """A PostgreSQL URL bound to a new schema, dropped when the generator ends."""
    schema = f"aifx_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _with_search_path(pg_server_url, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A PostgreSQL URL bound to a fresh schema that is dropped after the test."""
    yield from _fresh_schema(pg_server_url)


@pytest.fixture(scope="module")
def pg_module_url(pg_server_url: str) -> Iterator[str]:
    """A PostgreSQL URL bound to a fresh schema shared by a module's tests (servers they share)."""
    yield from _fresh_schema(pg_server_url)


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'aifx.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def make_store(db_url: str) -> Iterator[Callable[[], ExperimentStore]]:
    """Factory of ExperimentStores on db_url (one engine each, like separate workers); closes them."""
    stores: list[ExperimentStore] = []

    def make() -> ExperimentStore:
        stores.append(ExperimentStore(db_url))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], ExperimentStore]) -> ExperimentStore:
    """An ExperimentStore on db_url (SQLite file, then PostgreSQL schema)."""
    return make_store()
