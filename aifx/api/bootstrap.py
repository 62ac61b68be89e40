"""Builds the entry service's parts (registry, predictor, A/B tests) and logs the start-up summary."""

from __future__ import annotations

import asyncio
import gc
from datetime import timedelta
from typing import Any

from bentoml import server_context

from aifx.api.ab_tests import ABTests
from aifx.api.app import create_app
from aifx.api.asgi import ByteBudget
from aifx.api.catalog import Catalog
from aifx.api.context import get_logger
from aifx.api.outcome_log import OutcomeLog
from aifx.api.parts import Parts
from aifx.api.predictor import Predictor
from aifx.api.ratelimit import buckets_of
from aifx.api.registry import VersionRegistry
from aifx.api.stage_client import StageClient
from aifx.cache import SharedState
from aifx.settings import Settings, get_settings
from experiments import EvaluationStore, ExperimentStore
from experiments.db import DatabaseOptions

logger = get_logger("bentoml.aifx")
STARTUP_WAIT_SECONDS = 120.0

_settings = get_settings()
# One rate limit and one body budget per worker, whichever face (REST or native API) a request uses.
_buckets = buckets_of(_settings.rate_limit_per_second, _settings.rate_limit_burst)
_budget = ByteBudget(_settings.body_budget_bytes)
app = create_app(_settings, _buckets, _budget)
NATIVE_GUARDS = {"settings": _settings, "buckets": _buckets, "budget": _budget}  # NativeGuards' options


def build(detector: Any, direction: Any, settings: Settings | None = None) -> Parts:
    """The parts over the two stage services (remote proxies when served, instances in-process)."""
    settings = settings or get_settings()
    catalog = Catalog.from_store(settings.versions)
    store = ExperimentStore(settings.database_url, settings.migrate_on_start, database_options(settings))
    detect = StageClient.of("stage1", "ReversalDetector", detector, "detect", settings)
    classify = StageClient.of("stage2", "DirectionClassifier", direction, "classify", settings)
    ttl, timeout = settings.state_ttl_seconds, settings.state_timeout_seconds
    registry = VersionRegistry(
        settings,
        catalog,
        (detect, classify),
        SharedState("active version", store.get_active_version, ttl, timeout),
        store.set_active_version,
    )
    ab = ABTests(store, SharedState("active experiment", store.active_experiment, ttl, timeout))
    outcomes = outcome_log(settings, catalog, store)
    _log_catalog(settings, catalog)
    return Parts(registry, Predictor(registry, detect, classify, ab, outcomes), ab, outcomes)


def outcome_log(settings: Settings, catalog: Catalog, store: ExperimentStore) -> OutcomeLog | None:
    """The outcome loop's log over the experiment store's database (None with AIFX_OUTCOMES=false)."""
    if not settings.outcomes:
        return None

    def label_params() -> dict[str, Any]:
        return {v: e.spec.label_params for v, e in catalog.entries.items() if e.spec is not None}

    return OutcomeLog(settings, EvaluationStore(store), label_params)


def database_options(settings: Settings) -> DatabaseOptions:
    """Connection limits of the experiment store, from the settings."""
    return DatabaseOptions(
        connect_timeout_s=settings.database_connect_timeout_seconds,
        statement_timeout_ms=settings.database_statement_timeout_ms,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )


def attach(parts: Parts) -> None:
    """Serve the routes with these parts and log what loaded once the stages answer."""
    app.state.parts = parts
    # Start-up objects (modules, schemas, routes) live as long as the worker: frozen, they are not
    # walked by every full garbage collection during requests (docs/performance.md).
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    loop.create_task(report_when_ready(parts.registry))
    if parts.registry.settings.retention_days:
        loop.create_task(purge_periodically(parts, parts.registry.settings.retention_days))
    if parts.outcomes is not None and server_context.worker_index in (None, 1):
        # One resolver per pod: the database keeps the first resolution, and one writer avoids lock waits.
        registry = parts.registry
        loop.create_task(parts.outcomes.run(registry.catalog.order, registry.labels))


def detach(parts: Parts) -> None:
    """Shutdown (SIGTERM): write every queued evaluation row before the worker exits."""
    if parts.outcomes is not None and not parts.outcomes.close():
        logger.warning("shutdown: evaluation rows were left unwritten after the timeout")


async def report_when_ready(registry: VersionRegistry, wait: float = STARTUP_WAIT_SECONDS) -> None:
    """Log the seed-style summary of what loaded once both stage services report."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    avail = await registry.availability(refresh=True)
    while not avail.stages_reachable and loop.time() < deadline:
        await asyncio.sleep(1.0)
        avail = await registry.availability(refresh=True)
    active = await registry.active_version()
    bar = "=" * 72
    lines = [bar, "AIFX Reversal Engine: model versions", bar]
    for version in registry.catalog.order:
        entry = registry.catalog.entries[version]
        name = entry.spec.name if entry.spec else version
        if version in avail.loaded:
            stage2 = "loaded" if entry.has_stage2 else "not trained (direction by rule)"
            lines.append(f"  {version} ({name}): Stage 1 loaded, Stage 2 {stage2}")
        else:
            lines.append(f"  {version} ({name}): NOT loaded: {avail.failed.get(version)}")
    lines.append(f"Active version: {active}  (fallback order: {', '.join(registry.catalog.order)})")
    lines.append(f"Environment: {registry.settings.environment}")
    lines.append(bar)
    (logger.info if avail.loaded and not avail.failed else logger.warning)("\n".join(lines))


async def purge_periodically(parts: Parts, days: int, every_s: float = 3600.0) -> None:
    """Delete stored predictions and evaluation rows older than the retention period, hourly (idempotent)."""
    while True:
        try:
            deleted = await asyncio.to_thread(parts.ab.store.purge_predictions, timedelta(days=days))
            if deleted:
                logger.info("retention: deleted %d predictions older than %d days", deleted, days)
            if parts.outcomes is not None:
                purged = await asyncio.to_thread(parts.outcomes.store.purge, timedelta(days=days))
                if any(purged.values()):
                    logger.info("retention: deleted %s of the evaluation log older than %d days", purged, days)
        except Exception as exc:  # noqa: BLE001 - the database may be down; try again next time
            logger.warning("retention purge failed: %s", type(exc).__name__)
        await asyncio.sleep(every_s)


def _log_catalog(settings: Settings, catalog: Catalog) -> None:
    found = [v for v in catalog.order if catalog.entries[v].problem is None]
    missing = {v: e.problem for v, e in catalog.entries.items() if e.problem}
    logger.info(
        "configured versions %s (environment %s); in store: %s%s",
        ", ".join(catalog.order),
        settings.environment,
        ", ".join(found) or "none",
        "".join(f"; {v}: {p}" for v, p in missing.items()),
    )
