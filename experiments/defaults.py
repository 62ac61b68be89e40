"""Where the state database is when nothing says otherwise: importable without SQLAlchemy (aifx/settings.py
reads it too), so the service's settings and `python -m experiments` share one default."""

from __future__ import annotations

import os

DEFAULT_DATABASE_URL = "sqlite:///var/aifx.db"
ENV_DATABASE_URL = "AIFX_DATABASE_URL"


def default_database_url() -> str:
    """$AIFX_DATABASE_URL, else the SQLite file var/aifx.db relative to the current directory."""
    return os.environ.get(ENV_DATABASE_URL) or DEFAULT_DATABASE_URL
