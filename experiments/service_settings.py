"""Service settings shared by every worker and replica (the `settings` table), the active model version first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from experiments import validation as v
from experiments.base import Database
from experiments.db import is_sqlite
from experiments.errors import Invalid
from experiments.records import utcnow
from experiments.schema import settings

ACTIVE_VERSION_KEY = "active_version"


class ServiceSettings(Database):
    """Key-value settings, each upsert committed before it returns, and the service's active version."""

    def get_setting(self, key: str) -> str | None:
        """A settings value or None (primary-key lookup)."""
        with self._read() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar()

    def set_setting(self, key: str, value: str) -> None:
        """Upsert a settings value (committed before returning)."""
        stmt = self._setting_upsert(key, value)
        with self._write() as conn:
            conn.execute(stmt)

    def _setting_upsert(self, key: str, value: str) -> Any:
        """The checked upsert of a settings value."""
        v.check_id(key, "settings key")
        if not isinstance(value, str):
            raise Invalid("settings value must be a string")
        insert = sqlite_insert if is_sqlite(self._engine) else pg_insert
        now = utcnow()
        stmt = insert(settings).values(key=key, value=value, updated_at=now)
        return stmt.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value, "updated_at": now})

    def get_active_version(self) -> str | None:
        """The service's active model version (shared by every worker), or None if never set."""
        return self.get_setting(ACTIVE_VERSION_KEY)

    def set_active_version(self, version: str) -> None:
        """Persist the service's active model version."""
        self.set_setting(ACTIVE_VERSION_KEY, v.check_version(version, "version"))

    def put_active_version(self, conn: Connection, version: str) -> None:
        """Set the service's active model version inside the caller's write transaction (committed with it)."""
        conn.execute(self._setting_upsert(ACTIVE_VERSION_KEY, v.check_version(version, "version")))
