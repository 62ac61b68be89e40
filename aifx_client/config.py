"""Client configuration: explicit arguments win, then ML_API_* environment variables, then defaults."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_URL = "http://localhost:3000"
USER_AGENT = "aifx-client/1.0"
DEFAULT_TIMEOUT = 5.0
PREDICT_PATH = "/reversal/predict"
LEGACY_PATH = "/predict"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_bool(name: str, value: str) -> bool:
    """A boolean environment value (true/false, 1/0, yes/no, on/off) or a clear ValueError."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use true or false")


def parse_seconds(name: str, value: str) -> float:
    """A positive number of seconds or a clear ValueError."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"{name}={value!r} must be > 0 seconds")
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: try n waits uniform(0, min(cap, base * 2**(n-1)))."""

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be >= 1 (1 means no retry)")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("RetryPolicy backoff values must be >= 0")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based), never above max_backoff."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return (rng or random).uniform(0, ceiling) if self.jitter else ceiling


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs; build it with ClientConfig.from_env() to read ML_API_*."""

    base_url: str = DEFAULT_URL
    enabled: bool = True
    timeout: float = DEFAULT_TIMEOUT
    admin_token: str | None = None
    outcome_token: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    predict_path: str = PREDICT_PATH
    legacy_path: str = LEGACY_PATH
    fallback: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ClientConfig:
        """Read ML_API_ENABLED, ML_API_URL, ML_API_TIMEOUT and ML_API_ADMIN_TOKEN / _OUTCOME_TOKEN; overrides win."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if (enabled := env.get("ML_API_ENABLED", "").strip()) != "":
            values["enabled"] = parse_bool("ML_API_ENABLED", enabled)
        if url := env.get("ML_API_URL", "").strip():
            values["base_url"] = url
        if timeout := env.get("ML_API_TIMEOUT", "").strip():
            values["timeout"] = parse_seconds("ML_API_TIMEOUT", timeout)
        if token := env.get("ML_API_ADMIN_TOKEN", "").strip():
            values["admin_token"] = token
        if token := env.get("ML_API_OUTCOME_TOKEN", "").strip():
            values["outcome_token"] = token
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def resolve(cls, config: ClientConfig | None, **options: object) -> ClientConfig:
        """The given config, else ML_API_* from the environment with the non-None options on top."""
        return config if config is not None else cls.from_env(None, **options)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"ML_API_URL / base_url {self.base_url!r} must start with http:// or https://")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
