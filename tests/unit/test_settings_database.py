"""Production on SQLite by accident (issue 11, finding 6) and who runs the migrations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from aifx.settings import Settings, SettingsError

pytestmark = pytest.mark.unit
TOKEN = "t" * 32
PG = "postgresql+psycopg://aifx@db:5432/aifx"
ROOT = Path(__file__).resolve().parents[2]


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


SECRET = "hunter2-database-password"


@pytest.mark.parametrize("url", [f"mysql://aifx:{SECRET}@db/aifx", f"mongodb+srv://u:{SECRET}@h/x", f"{SECRET}"])
def test_an_unsupported_scheme_never_shows_the_password(url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Issue 29, item 10: the refusal names the scheme only, in Settings, get_settings, make_engine and migrate."""
    from aifx.settings import get_settings
    from experiments.__main__ import main
    from experiments.db import make_engine

    with pytest.raises(ValidationError) as err:
        Settings(database_url=url)
    assert SECRET not in str(err.value.errors(include_input=False)) and "unsupported scheme" in str(err.value)
    monkeypatch.setenv("AIFX_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as refused:
            get_settings()
        assert SECRET not in str(refused.value) and "AIFX_DATABASE_URL" in str(refused.value)
    finally:
        get_settings.cache_clear()
    with pytest.raises(ValueError) as engine_err:
        make_engine(url)
    assert SECRET not in str(engine_err.value)
    assert main(["migrate", "--url", url]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.err + captured.out and "unsupported database URL" in captured.err


def test_tokens_are_secret_strings() -> None:
    """Issue 29, item 10: a token never shows in a repr or a dump of the settings."""
    token = "s" * 40
    settings = Settings(admin_token=token, outcome_token="o" * 40)
    assert token not in repr(settings) and token not in str(settings.model_dump())
    assert settings.tokens(outcome=True) == ["o" * 40, token] and settings.tokens(outcome=False) == [token]
    assert Settings(admin_token=f"  {token}\n").tokens(outcome=False) == [token]


def test_allowed_hosts_and_trusted_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(environment="development").hosts == {"localhost", "127.0.0.1", "::1"}
    assert Settings(environment="production", admin_token=TOKEN, database_url=PG).hosts == {"*"}
    monkeypatch.setenv("AIFX_ALLOWED_HOSTS", "aifx.internal, [::1]")
    monkeypatch.setenv("AIFX_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")
    settings = Settings()
    assert settings.hosts == {"aifx.internal", "::1"} and settings.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    monkeypatch.setenv("AIFX_TRUSTED_PROXIES", "not-an-address")
    with pytest.raises(ValidationError, match="AIFX_TRUSTED_PROXIES"):
        Settings()


def test_the_migrate_command_runs_without_the_serving_statement_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 29, item 6: `python -m experiments migrate` connects with statement_timeout=0 (none)."""
    from experiments import __main__ as cli
    from experiments import db
    from experiments.db import _postgres_engine

    seen: list[object] = []

    def spy(url: str, options: object = None) -> object:
        seen.append(options)
        raise ValueError("stop here")

    monkeypatch.setattr(cli, "make_engine", spy)
    assert cli.main(["migrate", "--url", PG]) == 2
    assert seen == [cli.MIGRATION_OPTIONS] and cli.MIGRATION_OPTIONS.statement_timeout_ms == 0
    made: list[dict] = []
    monkeypatch.setattr(db, "create_engine", lambda url, **kwargs: made.append(kwargs))
    _postgres_engine(PG, cli.MIGRATION_OPTIONS)
    assert made[0]["connect_args"]["options"] == "-c statement_timeout=0"


def test_the_settings_module_imports_no_sqlalchemy():
    """aifx.settings takes the database default from experiments.defaults, which the lazy package leaves alone."""
    code = "import sys, aifx.settings; print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
