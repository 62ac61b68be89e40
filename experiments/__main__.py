"""`python -m experiments migrate [--url URL]`: bring the database to this code's schema."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy.exc import SQLAlchemyError

from experiments.db import DatabaseOptions, default_database_url, make_engine
from experiments.migrate import upgrade

# A migration rewrites whole tables: no serving statement timeout (0 = none on PostgreSQL), one connection.
MIGRATION_OPTIONS = DatabaseOptions(statement_timeout_ms=0, pool_size=1, max_overflow=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments")
    sub = ap.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="run the missing Alembic migrations")
    mig.add_argument("--url", default=None, help="database URL (default: $AIFX_DATABASE_URL or sqlite:///var/aifx.db)")
    args = ap.parse_args(argv)
    try:
        engine = make_engine(args.url or default_database_url(), MIGRATION_OPTIONS)
    except ValueError as exc:  # not a sqlite:/// or postgresql+psycopg:// URL
        print(f"python -m experiments migrate: {exc}", file=sys.stderr)
        return 2
    try:
        print(f"database at revision {upgrade(engine)}")
    except SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"python -m experiments migrate: the database refused or did not answer: {first}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
