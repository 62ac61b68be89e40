"""Issue 11, finding 8: auth fails closed. Only development and test may run without a token; tokens are long."""

from __future__ import annotations

import pytest

from aifx.settings import Settings, SettingsError, get_settings

pytestmark = pytest.mark.unit

MIN_TOKEN_CHARS = 32  # the rule of issue 11 (aifx.settings.MIN_TOKEN_CHARS)
LONG = "x" * MIN_TOKEN_CHARS
TOKENS = ("ENVIRONMENT", "AIFX_ENVIRONMENT", "AIFX_ADMIN_TOKEN", "AIFX_OUTCOME_TOKEN")
SHARED_DATABASE = "postgresql+psycopg://aifx@db.example/aifx"  # outside development/test SQLite is refused too


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    """A clean environment; get_settings() re-reads it."""
    for name in TOKENS:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def refusal(env: pytest.MonkeyPatch, **values: str) -> str:
    """The one-line reason get_settings() refuses to start with."""
    for name, value in values.items():
        env.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        get_settings()
    message = str(err.value)
    assert message.startswith("AIFX Reversal Engine refuses to start: ") and "\n" not in message
    return message


@pytest.mark.parametrize(
    "environment", ["production ", " Production", "PROD", "staging", "Staging\n", "qa", "dev", "testing", "", "  "]
)
def test_every_environment_but_development_and_test_requires_the_admin_token(env, environment):
    message = refusal(env, ENVIRONMENT=environment)
    assert "requires AIFX_ADMIN_TOKEN" in message


@pytest.mark.parametrize("environment", ["development", "test", " Development ", "TEST"])
def test_development_and_test_may_run_without_a_token(env, environment):
    env.setenv("ENVIRONMENT", environment)
    settings = get_settings()
    assert settings.admin_token is None and settings.outcome_token is None
    assert settings.environment == environment.strip().lower() and not settings.token_required


@pytest.mark.parametrize("environment", ["production", "staging", "development", "test"])
@pytest.mark.parametrize("name", ["AIFX_ADMIN_TOKEN", "AIFX_OUTCOME_TOKEN"])
def test_a_token_shorter_than_32_characters_refuses_to_start(env, environment, name):
    short = "s" * (MIN_TOKEN_CHARS - 1)
    tokens = {"AIFX_ADMIN_TOKEN": LONG, name: short}
    message = refusal(env, ENVIRONMENT=environment, **tokens)
    assert f"{name} has {MIN_TOKEN_CHARS - 1} characters" in message and short not in message


@pytest.mark.parametrize("environment", ["production", " staging "])
def test_a_32_character_admin_token_starts(env, environment):
    env.setenv("ENVIRONMENT", environment)
    env.setenv("AIFX_DATABASE_URL", SHARED_DATABASE)
    env.setenv("AIFX_ADMIN_TOKEN", f"  {LONG}\n")
    settings = get_settings()
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == LONG
    assert settings.token_required


def test_the_outcome_token_alone_does_not_satisfy_production(env):
    message = refusal(env, ENVIRONMENT="production", AIFX_OUTCOME_TOKEN=LONG)
    assert "requires AIFX_ADMIN_TOKEN" in message


def test_direct_construction_checks_the_length_too():
    with pytest.raises(ValueError, match="AIFX_ADMIN_TOKEN has 6 characters"):
        Settings(environment="development", admin_token="s3cret")
