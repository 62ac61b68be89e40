"""`python -m experiments migrate [--url URL]`: bring the database to this code's schema."""

from __future__ import annotations

import argparse

from experiments.db import default_database_url, make_engine
from experiments.migrate import upgrade


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments")
    sub = ap.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="run the missing Alembic migrations")
    mig.add_argument("--url", default=None, help="database URL (default: $AIFX_DATABASE_URL or sqlite:///var/aifx.db)")
    args = ap.parse_args(argv)
    engine = make_engine(args.url or default_database_url())
    try:
        print(f"database at revision {upgrade(engine)}")
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
