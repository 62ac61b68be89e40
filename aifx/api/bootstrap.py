"""Builds the engine for the entry service and logs the start-up summary."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aifx.api.app import create_app
from aifx.api.catalog import Catalog
from aifx.api.engine import Engine
from aifx.api.experiments import Experiments
from aifx.api.stages import StageCaller, Window, group_windows, ungroup
from aifx.settings import Settings, get_settings
from aifx.state import CachedActiveVersion, open_store

logger = logging.getLogger("bentoml.aifx")
STARTUP_WAIT_SECONDS = 120.0

app = create_app(get_settings())


def build_engine(detector: Any, direction: Any, settings: Settings | None = None) -> Engine:
    """The engine over the two stage services (remote proxies when served, instances in-process)."""
    settings = settings or get_settings()
    catalog = Catalog.from_store(settings.versions)
    store = open_store(settings.database_url)
    state = CachedActiveVersion(store, settings.state_ttl_seconds)
    attempts, timeout, backoff = (
        settings.stage_attempts,
        settings.stage_timeout_seconds,
        settings.stage_backoff_seconds,
    )
    engine = Engine(
        settings,
        catalog,
        detect=StageCaller("stage1", "ReversalDetector", _scorer(detector, "detect"), attempts, timeout, backoff),
        classify=StageCaller(
            "stage2", "DirectionClassifier", _scorer(direction, "classify"), attempts, timeout, backoff
        ),
        detector_status=_api(detector, "status"),
        direction_status=_api(direction, "status"),
        active=state,
        experiments=Experiments(store, settings.state_ttl_seconds),
    )
    _log_catalog(settings, catalog)
    return engine


def _api(dependency: Any, name: str) -> Callable[..., Awaitable[Any]]:
    """An async call of a stage API, looked up per call (remote clients are set up after __init__)."""

    async def call(*args: Any) -> Any:
        return await getattr(dependency.to_async, name)(*args)

    call.__name__ = name
    return call


def _scorer(dependency: Any, name: str) -> Callable[[list[Window]], Awaitable[list[float]]]:
    """A stage's scoring API over windows: one stacked array per version travels, not one object per window."""
    api = _api(dependency, name)

    async def score(windows: list[Window]) -> list[float]:
        batches, order = group_windows(windows)
        probs = await api(batches)
        if len(probs) != len(order):  # the caller reports the count mismatch
            return list(probs)
        return ungroup(probs, order)

    return score


def attach(engine: Engine) -> None:
    """Serve the routes with this engine and log what loaded once the stages answer."""
    app.state.engine = engine
    # Start-up objects (modules, schemas, routes) live as long as the worker: frozen, they are not
    # walked by every full garbage collection during requests (docs/performance.md).
    gc.collect()
    gc.freeze()
    asyncio.get_running_loop().create_task(report_when_ready(engine))


async def report_when_ready(engine: Engine, wait: float = STARTUP_WAIT_SECONDS) -> None:
    """Log the seed-style summary of what loaded once both stage services report."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    avail = await engine.availability(refresh=True)
    while not avail.stages_reachable and loop.time() < deadline:
        await asyncio.sleep(1.0)
        avail = await engine.availability(refresh=True)
    active = await engine.active_version()
    bar = "=" * 72
    lines = [bar, "AIFX Reversal Engine: model versions", bar]
    for version in engine.catalog.order:
        entry = engine.catalog.entries[version]
        name = entry.spec.name if entry.spec else version
        if version in avail.loaded:
            stage2 = "loaded" if entry.has_stage2 else "not trained (direction by rule)"
            lines.append(f"  {version} ({name}): Stage 1 loaded, Stage 2 {stage2}")
        else:
            lines.append(f"  {version} ({name}): NOT loaded: {avail.failed.get(version)}")
    lines.append(f"Active version: {active}  (fallback order: {', '.join(engine.catalog.order)})")
    lines.append(f"Environment: {engine.settings.environment}")
    lines.append(bar)
    (logger.info if avail.loaded and not avail.failed else logger.warning)("\n".join(lines))


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
