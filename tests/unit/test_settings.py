"""Settings: the production start-up refusal, admin token handling and the configured limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aifx.settings import Settings, SettingsError, get_settings

TOKEN = "s3cret-s3cret-s3cret-s3cret-s3cret"  # at least 32 characters

pytestmark = pytest.mark.unit


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    """A clean AIFX environment; get_settings() re-reads it."""
    for name in ("ENVIRONMENT", "AIFX_ENVIRONMENT", "AIFX_ADMIN_TOKEN", "AIFX_OUTCOME_TOKEN", "AIFX_MAX_BODY_BYTES"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize("environment", ["production", "PRODUCTION", "prod"])
@pytest.mark.parametrize("token", [None, "", "   "])
def test_production_without_token_refuses_to_start(env, environment, token):
    env.setenv("ENVIRONMENT", environment)
    if token is not None:
        env.setenv("AIFX_ADMIN_TOKEN", token)
    with pytest.raises(SettingsError) as err:
        get_settings()
    message = str(err.value)
    assert message.startswith("AIFX Reversal Engine refuses to start: ENVIRONMENT=prod")
    assert "requires AIFX_ADMIN_TOKEN" in message
    assert "\n" not in message  # one line, the last one of the start-up output


def test_production_with_token_starts(env):
    env.setenv("ENVIRONMENT", "production")
    env.setenv("AIFX_DATABASE_URL", "postgresql+psycopg://aifx@db.example/aifx")  # production refuses SQLite
    env.setenv("AIFX_ADMIN_TOKEN", TOKEN)
    settings = get_settings()
    assert settings.is_production and settings.admin_token.get_secret_value() == TOKEN


def test_aifx_environment_alias_is_checked_too(env):
    env.setenv("AIFX_ENVIRONMENT", "production")
    with pytest.raises(SettingsError, match="AIFX_ADMIN_TOKEN"):
        get_settings()


@pytest.mark.parametrize("environment", ["development", "test"])  # only these (staging needs a token: issue 11)
def test_development_and_test_start_without_token(env, environment):
    env.setenv("ENVIRONMENT", environment)
    settings = get_settings()
    assert settings.admin_token is None and not settings.is_production


def test_blank_token_means_admin_routes_are_open(env):
    env.setenv("AIFX_ADMIN_TOKEN", "")
    assert get_settings().admin_token is None


def test_direct_construction_raises_a_validation_error_with_the_reason():
    with pytest.raises(ValidationError, match="ENVIRONMENT=production requires AIFX_ADMIN_TOKEN"):
        Settings(environment="production", admin_token=None)


def test_body_limit_is_configurable(env):
    assert get_settings().max_body_bytes == 1_000_000
    get_settings.cache_clear()
    env.setenv("AIFX_MAX_BODY_BYTES", "2048")
    assert get_settings().max_body_bytes == 2048


def test_token_from_a_secret_file_loses_its_trailing_newline(env):
    env.setenv("AIFX_ADMIN_TOKEN", f"{TOKEN}\n")
    assert get_settings().admin_token.get_secret_value() == TOKEN
