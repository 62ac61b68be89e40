"""Configuration from ML_API_* and the disabled client (ML_API_ENABLED=false raises MLDisabled)."""

from __future__ import annotations

import pytest

from aifx_client import AIFXClient, ClientConfig, MLDisabled
from aifx_client.testing import FakeService

pytestmark = pytest.mark.unit


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ML_API_* variables from the outer environment."""
    for name in ("ML_API_ENABLED", "ML_API_URL", "ML_API_TIMEOUT", "ML_API_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    config = AIFXClient().config
    assert (config.base_url, config.enabled, config.timeout, config.admin_token) == (
        "http://localhost:3000",
        True,
        5.0,
        None,
    )
    assert (config.predict_path, config.legacy_path, config.fallback) == ("/reversal/predict", "/predict", True)


def test_environment_is_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ML_API_URL", "http://ml-engine:8000/")
    clean_env.setenv("ML_API_TIMEOUT", "2.5")
    clean_env.setenv("ML_API_ADMIN_TOKEN", "tok")
    config = AIFXClient().config
    assert (config.base_url, config.timeout, config.admin_token) == ("http://ml-engine:8000", 2.5, "tok")


def test_arguments_override_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ML_API_URL", "http://ml-engine:8000")
    clean_env.setenv("ML_API_ENABLED", "false")
    config = AIFXClient("http://127.0.0.1:3001", enabled=True, timeout=1.0).config
    assert (config.base_url, config.enabled, config.timeout) == ("http://127.0.0.1:3001", True, 1.0)


@pytest.mark.parametrize("value", ["false", "0", "no", "off", " FALSE "])
def test_disabled_client_raises_ml_disabled_and_sends_nothing(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("ML_API_ENABLED", value)
    fake = FakeService()
    client = AIFXClient(transport=fake.transport())
    assert client.enabled is False
    with pytest.raises(MLDisabled, match="ML_API_ENABLED=false"):
        client.predict("EUR/USD", features=[[1.0]])
    with pytest.raises(MLDisabled):
        client.health()
    assert fake.requests == [] and client.stats.requests == 0 and client.stats.fallbacks == 0


@pytest.mark.parametrize("value", ["true", "1", "yes", "on", ""])
def test_enabled_values(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("ML_API_ENABLED", value)
    assert AIFXClient().enabled is True


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("ML_API_ENABLED", "maybe", "ML_API_ENABLED='maybe' is not a boolean"),
        ("ML_API_TIMEOUT", "soon", "ML_API_TIMEOUT='soon' is not a number"),
        ("ML_API_TIMEOUT", "0", "must be > 0"),
        ("ML_API_URL", "localhost:3000", "must start with http://"),
    ],
)
def test_bad_values_fail_clearly(clean_env: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        AIFXClient()


def test_from_env_takes_an_explicit_mapping() -> None:
    config = ClientConfig.from_env({"ML_API_URL": "https://aifx.example", "ML_API_ENABLED": "0"})
    assert config.base_url == "https://aifx.example" and config.enabled is False
