"""Runtime settings: one pydantic-settings class, read from AIFX_* (and ENVIRONMENT) variables."""

from __future__ import annotations

import re
from functools import lru_cache
from ipaddress import ip_network
from typing import Annotated, Literal, TypeVar

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from experiments.defaults import DEFAULT_DATABASE_URL


class SettingsError(ValueError):
    """Settings that must stop the service from starting."""


# The only environments that may run without AIFX_ADMIN_TOKEN (admin and outcome routes then open).
OPEN_ENVIRONMENTS = ("development", "test")
MIN_TOKEN_CHARS = 32
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
S = TypeVar("S", bound=BaseSettings)


class ImportSettings(BaseSettings):
    """The settings read when service.py is imported (`import_settings`); none is a secret."""

    model_config = SettingsConfigDict(env_prefix="AIFX_", extra="ignore", populate_by_name=True)

    # Configured versions in fallback order; the first is the default.
    versions: Annotated[tuple[str, ...], NoDecode] = ("v3.1", "v3.0")
    # Logs (aifx/http/logs.py): the seed's LOG_LEVEL sets our loggers' and BentoML's level (unset: BentoML's
    # INFO); AIFX_LOG_FORMAT=json writes one JSON object per line for log shippers.
    log_level: Literal["debug", "info", "warning", "error", "critical"] | None = Field(
        default=None, validation_alias=AliasChoices("LOG_LEVEL", "AIFX_LOG_LEVEL")
    )
    log_format: Literal["text", "json"] = "text"

    @field_validator("versions", mode="before")
    @classmethod
    def _split_versions(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("versions")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("AIFX_VERSIONS must name at least one version, e.g. 'v3.1,v3.0'")
        if len(set(value)) != len(value):
            raise ValueError(f"AIFX_VERSIONS lists a version twice: {','.join(value)}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower() or None  # LOG_LEVEL= (empty) means unset
            return "warning" if value == "warn" else value
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return (value.strip().lower() or "text") if isinstance(value, str) else value


class Settings(ImportSettings):
    """Everything the service reads from the environment."""

    environment: str = Field(default="development", validation_alias=AliasChoices("ENVIRONMENT", "AIFX_ENVIRONMENT"))
    # Bearer tokens (docs: README "Authentication"). Outside development/test the admin token is required;
    # a token that is set has at least MIN_TOKEN_CHARS characters in every environment.
    # SecretStr: a token never shows in a repr, a log line or a validation error.
    admin_token: SecretStr | None = None
    outcome_token: SecretStr | None = None  # write token of POST /reversal/predictions/{id}/outcome (admin works too)
    # Host names the admin and outcome routes answer to (a DNS-rebinding page sends its own name):
    # default localhost, 127.0.0.1 and ::1 in development and test, any ("*") elsewhere (tokens required there).
    allowed_hosts: Annotated[tuple[str, ...] | None, NoDecode] = None
    # Addresses (or CIDR networks) of reverse proxies whose X-Forwarded-For names the client; from
    # anyone else the header is ignored (rate-limit key, loopback check). Empty: honoured from nobody.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    database_url: str = DEFAULT_DATABASE_URL  # the experiment store's own default
    # SQLite is one file per machine: in production every pod would have its own state. Allow it explicitly.
    allow_sqlite_in_production: bool = False
    # Run the schema migrations at first use (development/test default); production runs `make migrate`
    # as a deploy step and serves with a database user that has no DDL rights.
    database_migrate: bool | None = None
    # Per process: pool_size + max_overflow connections; keep workers x pods x that under max_connections.
    database_pool_size: int = Field(default=5, ge=1, le=100)
    database_max_overflow: int = Field(default=5, ge=0, le=100)
    database_connect_timeout_seconds: int = Field(default=3, ge=1, le=60)
    database_statement_timeout_ms: int = Field(default=5_000, ge=100, le=600_000)
    # Predictions stored under experiments are deleted after this many days (0 keeps them).
    retention_days: int = Field(default=90, ge=0)
    # Requests per second per client (bearer token, else address) and worker; 0 turns the limit off.
    rate_limit_per_second: float = Field(default=2000.0, ge=0)
    rate_limit_burst: int = Field(default=4000, ge=1)
    state_ttl_seconds: float = Field(default=0.5, ge=0.0, le=1.0)
    # A state read (active version, active experiment) that takes longer is abandoned; the last known value serves.
    state_timeout_seconds: float = Field(default=1.0, gt=0)
    # Candle windows already scored, per entry worker, keyed by the candles' content and the stage models'
    # tags (aifx/serving/window_cache.py): many users asking about one bar cost one stage call. 0 turns it off.
    window_cache_size: int = Field(default=1024, ge=0)  # ~4 KB each: rows, probabilities, key
    max_body_bytes: int = 1_000_000
    # Request body limits (413 beyond; README "Configuration"). AIFX_MAX_BODY_BYTES above is the largest,
    # the batch route's; predict, compare and the legacy /predict take up to MAX_CANDLES candles; every
    # other route (experiments, outcomes, admin) takes a small object.
    max_predict_body_bytes: int = Field(default=262_144, gt=0)
    max_other_body_bytes: int = Field(default=16_384, gt=0)
    # Bytes of request bodies one entry worker parses and holds at once; a request that would pass it
    # waits (then 503). Parsed JSON takes up to ~62x its size (measured: 1 MB of `[]` or `{}` lists, see
    # aifx/http/asgi.py BodySizeLimit), so 2 MB (two full batch bodies) bounds what bodies cost a worker
    # to ~125 MB: the 1 Gi API pod holds the arbiter and 2 workers (~230 MB each at rest) plus that twice.
    body_budget_bytes: int = Field(default=2_000_000, gt=0)
    # Bytes are taken from the budget as they arrive, and a body must arrive within this (408 beyond):
    # slow senders hold neither the budget nor a concurrency slot for long.
    body_read_seconds: float = Field(default=10.0, gt=0, le=300)
    # The outcome loop (README "Outcomes"): every served prediction and every other loaded version's decision
    # on the same bar are logged, then resolved from later candles of trusted sources.
    outcomes: bool = True
    # Versions scored beside the served one (default: every loaded version); AIFX_SHADOW_VERSIONS= (empty) for none.
    shadow_versions: Annotated[tuple[str, ...] | None, NoDecode] = None
    trade_cost_pips: float = Field(default=1.0, ge=0, le=100)
    # Pairs beyond the built-in table (aifx/trade.py), as JSON: {"XAU/USD": 0.01}.
    pip_sizes: dict[str, float] = Field(default_factory=dict)
    # A pending bar without covering candles for this long is expired.
    outcome_expiry_hours: float = Field(default=168.0, gt=0)
    resolve_every_seconds: float = Field(default=2.0, gt=0)
    # Two trusted sources whose prices of one candle differ by more than this share of the price conflict.
    candle_tolerance: float = Field(default=1e-6, ge=0, le=0.01)
    evaluation_queue_rows: int = Field(default=50_000, ge=100)
    # Signal streams (GET /reversal/signals/stream): open streams per entry worker and per client address,
    # how often a worker without PostgreSQL's NOTIFY looks for new events, and a stream's longest life (the
    # client reconnects with Last-Event-ID and misses nothing). A stream holds one of BentoML's request
    # slots (max_concurrency / workers: 128) while open: 64 leave predictions the other half.
    signals_max_subscribers: int = Field(default=64, ge=1, le=10_000)
    signals_max_per_client: int = Field(default=4, ge=1, le=1_000)
    signals_poll_seconds: float = Field(default=0.25, gt=0, le=60)
    signals_max_stream_seconds: float = Field(default=3600.0, gt=0)
    # A stream whose client takes no bytes for this long (a send blocked on a full socket) is closed.
    signals_send_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Bytes the write-behind queue of evaluation rows holds per worker (a trusted predict queues its
    # candles: ~136 bytes each); beyond it rows are dropped and counted, whatever their number.
    evaluation_queue_bytes: int = Field(default=64_000_000, ge=100_000)
    # While the database refuses connections, evaluation rows go to a local spool (per worker, on disk)
    # and are written when it answers again; beyond this many bytes they are dropped and counted. 0: no spool.
    evaluation_spool_bytes: int = Field(default=256_000_000, ge=0)
    # Default: beside a SQLite file (<file>.spool), else var/spool; each worker has its own subdirectory.
    evaluation_spool_dir: str | None = None
    # Paired comparisons and the promotion policy (README "Deciding between versions"): the always-valid
    # interval's error level, the smallest difference in R per bar worth acting on, the guardrails.
    comparison_alpha: float = Field(default=0.05, gt=0, lt=0.5)
    comparison_min_effect_r: float = Field(default=0.05, gt=0, le=10)
    guardrail_max_drawdown_r: float = Field(default=100.0, gt=0)
    guardrail_max_error_rate: float = Field(default=0.05, ge=0, le=1)
    promotion_every_seconds: float = Field(default=60.0, gt=0)
    # Input drift (aifx/drift.py): each entry worker recomputes the PSI of its changed windows this often,
    # off the request path, and sets aifx_feature_drift_psi and its ratio to the alert thresholds; 0 turns
    # drift monitoring off. Input drift is an alert, never a guardrail (both versions see the same inputs).
    drift_every_seconds: float = Field(default=10.0, ge=0)
    # The alert threshold of every column of a reference imported without calibrated thresholds (drift.json
    # written before issue 26; a warning at start says which). Calibrated references ignore it.
    drift_fallback_psi: float = Field(default=0.25, gt=0)

    @field_validator("shadow_versions", "allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("environment")
    @classmethod
    def _normalize_environment(cls, value: str) -> str:
        return value.strip().lower()  # `Production ` is production

    @field_validator("admin_token", "outcome_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return value.strip() or None  # a secret file's trailing newline is not part of the token
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_networks(value)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        return _check_scheme(value)

    @property
    def migrate_on_start(self) -> bool:
        """Whether the service brings the schema up to date itself (default: only in development and test)."""
        if self.database_migrate is not None:
            return self.database_migrate
        return self.environment in ("development", "test")

    @model_validator(mode="after")
    def _fail_closed(self) -> Settings:
        _check_tokens(self)
        _check_shared_database(self)
        return self

    @property
    def hosts(self) -> frozenset[str]:
        """Allowed Host names, lower case without port ("*": any)."""
        if self.allowed_hosts:  # unset or empty: the environment's default
            return frozenset(h.lower().strip("[]") for h in self.allowed_hosts)
        return LOCAL_HOSTS if self.environment in OPEN_ENVIRONMENTS else frozenset({"*"})

    def tokens(self, *, outcome: bool) -> list[str]:
        """The admin token's value, with the outcome token's first when outcome (none when unset)."""
        secrets = (self.outcome_token, self.admin_token) if outcome else (self.admin_token,)
        return [s.get_secret_value() for s in secrets if s is not None]

    @property
    def token_required(self) -> bool:
        """Every environment except development and test refuses to start without AIFX_ADMIN_TOKEN."""
        return self.environment not in OPEN_ENVIRONMENTS

    @property
    def is_production(self) -> bool:
        return self.environment in ("production", "prod")

    @property
    def default_version(self) -> str:
        return self.versions[0]


def _comma_list(value: object) -> object:
    """A comma-separated variable as its non-blank items (other values as given)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _check_networks(value: tuple[str, ...]) -> tuple[str, ...]:
    """AIFX_TRUSTED_PROXIES: every item an IP address or network."""
    for item in value:
        try:
            ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"AIFX_TRUSTED_PROXIES: {item[:60]!r} is not an IP address or network") from None
    return value


def _check_scheme(value: str) -> str:
    """AIFX_DATABASE_URL: SQLite or PostgreSQL; only the scheme is named (the rest of the URL may carry a password)."""
    scheme, sep, _ = value.partition("://")
    scheme = scheme.lower() if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,29}", scheme) else "(not a URL)"
    if scheme.split("+", 1)[0] not in ("sqlite", "postgresql"):
        raise ValueError(
            f"AIFX_DATABASE_URL has the unsupported scheme {scheme[:30]!r}: use sqlite:///... or "
            "postgresql+psycopg://..."
        )
    return value


def _check_tokens(s: Settings) -> None:
    """Tokens fail closed: long enough when set, and the admin token required outside development and test."""
    for name, secret in (("AIFX_ADMIN_TOKEN", s.admin_token), ("AIFX_OUTCOME_TOKEN", s.outcome_token)):
        if secret is not None and len(secret.get_secret_value()) < MIN_TOKEN_CHARS:
            raise SettingsError(
                f"{name} has {len(secret.get_secret_value())} characters, fewer than {MIN_TOKEN_CHARS}; "
                "use a random one, e.g. `openssl rand -hex 32`"
            )
    if s.token_required and not s.admin_token:
        raise SettingsError(
            f"ENVIRONMENT={s.environment or '(empty)'} requires AIFX_ADMIN_TOKEN (admin routes would be open); "
            f"set it (at least {MIN_TOKEN_CHARS} characters) or run with ENVIRONMENT=development or test"
        )


def _check_shared_database(s: Settings) -> None:
    """Outside development and test, SQLite gives every pod its own state: refused unless allowed for one machine."""
    if s.token_required and s.database_url.startswith("sqlite") and not s.allow_sqlite_in_production:
        raise SettingsError(
            f"ENVIRONMENT={s.environment} with a SQLite database gives every pod its own state; set "
            "AIFX_DATABASE_URL=postgresql+psycopg://... (or AIFX_ALLOW_SQLITE_IN_PRODUCTION=true for one machine)"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once when the service starts; SettingsError with a one-line reason."""
    return _read(Settings)


def import_settings() -> ImportSettings:
    """The versions and log settings, validated as Settings validates them, without reading any other setting.

    The only settings read when service.py is imported: `bentoml build` packs the models the service class
    declares at class scope, one per stored (version, stage), and BentoML logs as it loads the service, before
    any start hook runs. Everything else (tokens, database) is read when the service starts, so importing the
    service needs no runtime secrets.
    """
    return _read(ImportSettings)


def _read(cls: type[S]) -> S:
    try:
        return cls()
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise SettingsError(f"AIFX Reversal Engine refuses to start: {reasons}") from None
