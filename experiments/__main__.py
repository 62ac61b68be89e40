"""`python -m experiments migrate [--url URL]`: bring the database to this code's schema.

`python -m experiments wait [--url URL] [--timeout S]`: wait until it is there (a Kubernetes init
container before the service starts, deploy/k8s/; the serving user's rights suffice)."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from experiments.db import DatabaseOptions, make_engine
from experiments.defaults import DEFAULT_DATABASE_URL, default_database_url
from experiments.errors import SchemaMismatch
from experiments.migrate import first_line, upgrade, wait

# A migration rewrites whole tables: no serving statement timeout (0 = none on PostgreSQL), one connection.
MIGRATION_OPTIONS = DatabaseOptions(statement_timeout_ms=0, pool_size=1, max_overflow=0)
# The wait reads one row: the serving timeouts, one connection.
WAIT_OPTIONS = DatabaseOptions(pool_size=1, max_overflow=0)
URL_HELP = f"database URL (default: $AIFX_DATABASE_URL or {DEFAULT_DATABASE_URL})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments")
    sub = ap.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="run the missing Alembic migrations")
    mig.add_argument("--url", default=None, help=URL_HELP)
    wt = sub.add_parser("wait", help="wait until the database is at this code's schema (another process migrates)")
    wt.add_argument("--url", default=None, help=URL_HELP)
    wt.add_argument("--timeout", type=float, default=600.0, help="seconds to wait at most (default 600)")
    args = ap.parse_args(argv)
    options = MIGRATION_OPTIONS if args.command == "migrate" else WAIT_OPTIONS
    try:
        engine = make_engine(args.url or default_database_url(), options)
    except ValueError as exc:  # not a sqlite:/// or postgresql+psycopg:// URL
        print(f"python -m experiments {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "wait":
        return _wait(engine, args.timeout)
    try:
        print(f"database at revision {upgrade(engine)}")
    except SQLAlchemyError as exc:
        reason = first_line(exc)
        print(f"python -m experiments migrate: the database refused or did not answer: {reason}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


def _wait(engine: Engine, timeout_s: float) -> int:
    """0 once the database is at this code's revision, 1 after timeout_s (the error on stderr)."""
    try:
        print(f"database at revision {wait(engine, timeout_s, say=lambda m: print(m, flush=True))}")
    except (SchemaMismatch, SQLAlchemyError) as exc:
        print(f"python -m experiments wait: gave up after {timeout_s:g} s: {first_line(exc)}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
