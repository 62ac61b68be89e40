"""Runtime settings: one pydantic-settings class, read from AIFX_* (and ENVIRONMENT) variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class SettingsError(ValueError):
    """Settings that must stop the service from starting."""


class Settings(BaseSettings):
    """Everything the service reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="AIFX_", extra="ignore", populate_by_name=True)

    environment: str = Field(default="development", validation_alias=AliasChoices("ENVIRONMENT", "AIFX_ENVIRONMENT"))
    admin_token: str | None = None
    database_url: str = "sqlite:///var/aifx.db"  # same default as experiments.DEFAULT_DATABASE_URL
    # Configured versions in fallback order; the first is the default.
    versions: Annotated[tuple[str, ...], NoDecode] = ("v3.1", "v3.0")
    state_ttl_seconds: float = Field(default=0.5, ge=0.0, le=1.0)
    # A state read (active version, active experiment) that takes longer is abandoned; the last known value serves.
    state_timeout_seconds: float = Field(default=1.0, gt=0)
    # A dead stage answers 503 within attempts x timeout + backoff + slack = 3 x 2 + 0.15 + 0.5 s (queue wait
    # included; see aifx.api.stages.StageCaller.deadline).
    stage_timeout_seconds: float = Field(default=2.0, gt=0)
    stage_attempts: int = Field(default=3, ge=1, le=10)
    stage_backoff_seconds: float = Field(default=0.05, ge=0)
    max_body_bytes: int = 1_000_000

    @field_validator("versions", mode="before")
    @classmethod
    def _split_versions(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("versions")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("AIFX_VERSIONS must name at least one version, e.g. 'v3.1,v3.0'")
        if len(set(value)) != len(value):
            raise ValueError(f"AIFX_VERSIONS lists a version twice: {','.join(value)}")
        return value

    @field_validator("admin_token")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return (value or "").strip() or None  # a secret file's trailing newline is not part of the token

    @model_validator(mode="after")
    def _production_needs_token(self) -> Settings:
        if self.is_production and not self.admin_token:
            raise SettingsError(
                "ENVIRONMENT=production requires AIFX_ADMIN_TOKEN (admin routes would be open); "
                "set it or run with another ENVIRONMENT"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.environment.lower() in ("production", "prod")

    @property
    def default_version(self) -> str:
        return self.versions[0]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once); SettingsError with a one-line reason when they are invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SettingsError(f"AIFX Reversal Engine refuses to start: {reasons}") from None
