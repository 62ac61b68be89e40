"""Builds the entry service's parts (registry, predictor, A/B tests) and logs the start-up summary."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from bentoml import server_context
from sqlalchemy.engine import make_url

from aifx import metrics
from aifx.cache import SharedState
from aifx.drift import DriftWindows, Reference
from aifx.http.app import assemble, rest_app
from aifx.http.logs import configure as configure_logs
from aifx.http.supervision import quicken_respawn
from aifx.serving.ab_tests import ABTests
from aifx.serving.catalog import Catalog
from aifx.serving.context import get_logger
from aifx.serving.evaluation import publish_srm
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.parts import Parts
from aifx.serving.predictor import Predictor
from aifx.serving.promoter import Promoter
from aifx.serving.registry import MODELS_GENERATION_KEY, VersionRegistry
from aifx.serving.signal_hub import SignalHub
from aifx.serving.window_cache import WindowCache
from aifx.settings import Settings, get_settings, import_settings
from aifx.versions import DRIFT_FILE, recorded_checksums, sha256_hex
from experiments import EvaluationStore, ExperimentStore
from experiments.anchors import AnchorStore
from experiments.db import DatabaseOptions
from experiments.promotion import PromotionStore
from experiments.signals import SignalStore
from experiments.spool import Spool
from runners.stage import DirectionClassifier, ReversalDetector

logger = get_logger("bentoml.aifx")
STARTUP_WAIT_SECONDS = 120.0
# The REST app the service mounts: its routes at import (BentoML documents them at build), its settings and
# guards when a worker starts (start_worker).
app = rest_app()


def at_import() -> tuple[str, ...]:
    """What service.py reads at import: the logs set up now (BentoML logs as it loads the service, before any
    start hook), the configured versions returned (the models the class declares)."""
    imported = import_settings()
    configure_logs(imported.log_level, imported.log_format)  # the arbiter and each worker, after BentoML's set-up
    return imported.versions


def start_serving() -> None:
    """The `bentoml serve` process, before it starts any worker: invalid settings stop it here with their one-line
    reason, and the arbiter it is about to create respawns workers fast."""
    get_settings()
    quicken_respawn()


def start_worker() -> None:
    """Each worker, before uvicorn starts: settings, trusted proxies and the REST app's guards (idempotent)."""
    settings = get_settings()
    # uvicorn (under `bentoml serve`) replaces the peer address by X-Forwarded-For from 127.0.0.1 and ::1 unless
    # told otherwise, so any local client could choose its rate-limit key: only AIFX_TRUSTED_PROXIES may.
    # The worker's uvicorn.Config reads this after the service built its ASGI app.
    os.environ["FORWARDED_ALLOW_IPS"] = ",".join(settings.trusted_proxies)
    # One rate limit and one body budget per worker, whichever face (REST or native API) a request uses: the
    # app's (app.state.buckets and budget), which NativeGuards and HotRoutes take at the first request.
    assemble(app, settings)


def build(detector: ReversalDetector, direction: DirectionClassifier, settings: Settings | None = None) -> Parts:
    """The parts over this worker's two stage runners."""
    settings = settings or get_settings()
    catalog = Catalog.from_store(settings.versions)
    store = ExperimentStore(settings.database_url, settings.migrate_on_start, database_options(settings))
    ttl, timeout = settings.state_ttl_seconds, settings.state_timeout_seconds
    registry = VersionRegistry(
        settings,
        catalog,
        (detector, direction),
        SharedState("active version", store.get_active_version, ttl, timeout),
        store.set_active_version,
        SharedState("models generation", functools.partial(store.get_setting, MODELS_GENERATION_KEY), ttl, timeout),
        functools.partial(store.set_setting, MODELS_GENERATION_KEY),
    )
    ab = ABTests(store, SharedState("active experiment", store.active_experiment, ttl, timeout))
    outcomes = outcome_log(settings, catalog, store)
    _log_catalog(settings, catalog)
    fallback = settings.drift_fallback_psi
    drift = DriftWindows(drift_references(catalog), fallback_psi=fallback) if settings.drift_every_seconds else None
    predictor = Predictor(
        registry,
        detector,
        direction,
        ab,
        outcomes,
        drift=drift,
        cache=WindowCache(settings.window_cache_size),
    )
    promoter = None
    if outcomes is not None:  # comparisons read the evaluation log
        # Input drift is no challenger guardrail: both versions see the same inputs, and anonymous requests
        # fill the drift windows. It is an alert (aifx_feature_drift_psi), never a promotion's or rollback's cause.
        policies, anchors = PromotionStore(store), AnchorStore(store)
        promoter = Promoter(settings, outcomes.store, policies, registry, predictor.health, anchors)
    signals = None
    if outcomes is not None:  # events are made where trusted candles close bars (aifx/serving/trusted_bars.py)
        signals = SignalHub(SignalStore(store), settings.signals_max_subscribers, settings.signals_max_per_client,
                            settings.signals_poll_seconds)  # fmt: skip
    return Parts(registry, predictor, ab, outcomes, promoter, signals)


def drift_references(catalog: Catalog, folder_of: Callable[[str], Path] | None = None) -> dict[str, Reference]:
    """Each configured version's training drift reference (Stage 1's drift.json, checked against the
    checksum recorded at import); versions imported without one, or with an unusable one, export no drift.
    `folder_of` maps a store tag to its folder (default: the BentoML model store)."""
    folder_of = folder_of or _store_folder
    out = {}
    for version in catalog.order:
        entry = catalog.entries[version]
        if entry.spec is None or 1 not in entry.stages:
            continue
        try:
            stage1 = entry.stages[1]
            path = folder_of(stage1.tag) / DRIFT_FILE
            if not path.is_file():
                logger.info("%s has no drift reference (imported before them): no drift metrics", version)
                continue
            data = path.read_bytes()
            recorded = (recorded_checksums(stage1.metadata) or {}).get(DRIFT_FILE)
            if recorded is None or sha256_hex(data) != recorded.lower():
                raise ValueError(f"{DRIFT_FILE} does not match the checksum recorded at import")
            reference = Reference.from_json(json.loads(data))
            if reference.features != entry.spec.features:
                raise ValueError(f"{DRIFT_FILE} features differ from the version's")
        except Exception as exc:  # noqa: BLE001 - drift is monitoring: a bad reference never stops serving
            logger.warning("%s: drift reference not used: %s", version, exc)
            continue
        if reference.thresholds is None:
            logger.warning("%s: drift reference without calibrated alert thresholds (imported before them): its "
                           "drift alert uses AIFX_DRIFT_FALLBACK_PSI for every feature, which windows of the "
                           "training period itself often exceed (docs/statistics.md); re-import the version to "
                           "calibrate them", version)  # fmt: skip
        out[version] = reference
    return out


def _store_folder(tag: str) -> Path:
    import bentoml

    return Path(bentoml.models.get(tag).path)


def outcome_log(settings: Settings, catalog: Catalog, store: ExperimentStore) -> OutcomeLog | None:
    """The outcome loop's log over the experiment store's database (None with AIFX_OUTCOMES=false)."""
    if not settings.outcomes:
        return None

    def label_params() -> dict[str, Any]:
        return {v: e.spec.label_params for v, e in catalog.entries.items() if e.spec is not None}

    return OutcomeLog(settings, EvaluationStore(store), label_params, evaluation_spool(settings))


def evaluation_spool(settings: Settings) -> Spool | None:
    """This worker's spool of evaluation rows (None with AIFX_EVALUATION_SPOOL_BYTES=0)."""
    if not settings.evaluation_spool_bytes:
        return None
    base = settings.evaluation_spool_dir
    if base is None:
        url = make_url(settings.database_url)
        on_disk = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        base = f"{url.database}.spool" if on_disk else "var/spool"
    # Per worker index, not pid: a restarted worker replays what its predecessor left.
    try:
        return Spool(Path(base) / f"worker-{server_context.worker_index or 0}", settings.evaluation_spool_bytes)
    except OSError as exc:  # a read-only or missing directory: serve without a spool, and say so
        logger.warning("evaluation spool off: %s is not usable (%s); set AIFX_EVALUATION_SPOOL_DIR", base, exc)
        return None


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
    drift = parts.predictor.drift
    if drift is not None and drift.references:  # every worker: each has its own windows (aifx/metrics.py)
        loop.create_task(publish_drift(drift, parts.registry.labels, parts.registry.settings.drift_every_seconds))
    if parts.signals is not None:  # every worker follows the events for its own subscribers
        loop.create_task(parts.signals.run())
    if parts.registry.settings.retention_days and server_context.worker_index in (None, 1):
        # One purger per pod (the deletes are idempotent across pods, and batched: experiments/purge.py).
        loop.create_task(purge_periodically(parts, parts.registry.settings.retention_days))
    if parts.outcomes is not None and server_context.worker_index in (None, 1):
        # One resolver per pod: the database keeps the first resolution, and one writer avoids lock waits.
        registry = parts.registry
        loop.create_task(parts.outcomes.run(registry.catalog.order, registry.labels))
    if parts.promoter is not None and server_context.worker_index in (None, 1):
        # One promoter per pod; across pods a database lease lets one act (experiments/promotion.py).
        loop.create_task(parts.promoter.run(functools.partial(publish_srm, parts)))


def detach(parts: Parts) -> None:
    """Shutdown (SIGTERM): write every queued evaluation row before the worker exits."""
    if parts.outcomes is not None and not parts.outcomes.close():
        logger.warning("shutdown: evaluation rows were left unwritten after the timeout")


async def report_when_ready(registry: VersionRegistry, wait: float = STARTUP_WAIT_SECONDS) -> None:
    """Log the seed-style summary of what loaded once the runners report."""
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
            if parts.signals is not None:
                await asyncio.to_thread(parts.signals.store.purge, timedelta(days=days))
        except Exception as exc:  # noqa: BLE001 - the database may be down; try again next time
            logger.warning("retention purge failed: %s", type(exc).__name__)
        await asyncio.sleep(every_s)


async def publish_drift(drift: DriftWindows, labels: metrics.MetricLabels, every_s: float) -> None:
    """Recompute the PSI of the windows that changed and set aifx_feature_drift_psi and its ratio to the alert
    thresholds (aifx_feature_drift_psi_ratio), every `every_s` seconds; the thresholds of a full window
    (aifx_feature_drift_psi_threshold) are set once.

    Every version with a reference reads 0 until one of its windows has enough rows (and again when its
    windows are dropped), so the series exist from start-up. The PSI runs in a worker thread, not on the
    event loop: ~0.2 ms per changed window (13 columns of 500 rows), ~25 ms if all 128 windows changed.
    """
    for version, reference in drift.references.items():
        metrics.set_feature_drift(labels, version, reference.names, {})
        metrics.set_feature_drift_thresholds(labels, version, drift.threshold(version))
    published: set[str] = set(drift.references)
    while True:
        await asyncio.sleep(every_s)
        try:
            psi = await asyncio.to_thread(drift.psi)
            ratios = drift.ratios()  # computed by that same call
            for version, values in psi.items():
                if values or version in published:
                    names = drift.references[version].names
                    metrics.set_feature_drift(labels, version, names, values, ratios.get(version))
                    published.add(version)
        except Exception as exc:  # noqa: BLE001 - monitoring must never stop; try again next time
            logger.warning("drift metrics failed: %s", exc)


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
