"""Production on SQLite by accident (issue 11, finding 6) and who runs the migrations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aifx.settings import Settings, SettingsError

pytestmark = pytest.mark.unit
TOKEN = "t" * 32
PG = "postgresql+psycopg://aifx@db:5432/aifx"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the arguments only (other tests' fixtures may have set AIFX_* variables)."""
    for name in ("AIFX_DATABASE_URL", "AIFX_ADMIN_TOKEN", "AIFX_OUTCOME_TOKEN", "ENVIRONMENT", "AIFX_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AIFX_DATABASE_MIGRATE", "AIFX_ALLOW_SQLITE_IN_PRODUCTION"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("environment", ["production", "staging", "Production "])
def test_outside_development_sqlite_is_refused_unless_allowed(environment: str) -> None:
    with pytest.raises((SettingsError, ValidationError), match="SQLite database gives every pod its own state"):
        Settings(environment=environment, admin_token=TOKEN)  # the default sqlite:///var/aifx.db
    assert Settings(environment=environment, admin_token=TOKEN, database_url=PG).database_url == PG
    allowed = Settings(environment=environment, admin_token=TOKEN, allow_sqlite_in_production=True)
    assert allowed.database_url.startswith("sqlite")


def test_development_keeps_its_sqlite_file() -> None:
    assert Settings(environment="development").database_url == "sqlite:///var/aifx.db"


def test_only_development_and_test_migrate_by_themselves() -> None:
    assert Settings(environment="development").migrate_on_start is True
    assert Settings(environment="test").migrate_on_start is True
    assert Settings(environment="production", admin_token=TOKEN, database_url=PG).migrate_on_start is False
    forced = Settings(environment="production", admin_token=TOKEN, database_url=PG, database_migrate=True)
    assert forced.migrate_on_start is True


def test_pool_sizes_are_bounded() -> None:
    with pytest.raises(ValidationError):
        Settings(database_pool_size=0)
    assert Settings(database_pool_size=20, database_max_overflow=0).database_max_overflow == 0
