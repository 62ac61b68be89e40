"""The version registry: which configured versions serve, the active one, resolving, switching, describing."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aifx import metrics
from aifx import signal as sig
from aifx.cache import SharedState
from aifx.serving.catalog import Catalog, VersionEntry
from aifx.serving.context import get_logger
from aifx.serving.errors import (
    ApiError,
    VersionUnavailable,
    error_id,
    unknown_version,
    version_unavailable,
    with_error_id,
)
from aifx.settings import Settings
from runners.stage import StageRunner

logger = get_logger("bentoml.aifx.registry")
STATUS_TTL_OK = 30.0  # the runners' load reports change only on reloads (which refresh them)
STATUS_TTL_RETRY = 1.0
# /health to anonymous callers: which versions fail, not why (paths, hosts and exception texts stay private).
HIDDEN_REASON = "not loaded (the reason: /health with the admin token, or the log)"
MODELS_GENERATION_KEY = "models_generation"  # state database: changed by every admin reload
RELOAD_WAIT_SECONDS = 5.0  # a request waits at most this long for its worker's reload, then serves what it had


@dataclass
class Availability:
    """Which configured versions serve (all their stages loaded) and why the others do not."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stages_reachable: bool = False
    checked_at: float = float("-inf")

    def reasons(self) -> str:
        return "; ".join(f"{v}: {r}" for v, r in self.failed.items()) or "none configured"


class VersionRegistry:
    """Configured versions, their availability from the stages' load reports, and the active version."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        stages: tuple[StageRunner, StageRunner],
        active: SharedState[str],
        write_active: Callable[[str], None],
        generation: SharedState[str] | None = None,
        write_generation: Callable[[str], None] | None = None,
        read_catalog: Callable[[tuple[str, ...]], Catalog] = Catalog.from_store,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.stages = stages
        self.active = active
        self._write_active = write_active
        self.labels = metrics.MetricLabels(catalog.order)
        self._publish_catalog()
        metrics.start_out_of_domain(self.labels)
        self._avail = Availability()
        self._avail_lock = asyncio.Lock()
        self._stages_answered = False
        self._published_active: str | None = None
        # Reloads (POST /reversal/models/reload): the models generation in the state database, the one this
        # worker's catalog reflects, and the versions found in the store since the start (the stages load them).
        self.generation = generation
        self._write_generation = write_generation
        self._read_catalog = read_catalog
        self._seen_generation: str | None = None
        self._reloading: asyncio.Task[None] | None = None
        self.added: dict[int, set[str]] = {1: set(), 2: set()}

    def _publish_catalog(self) -> None:
        metrics.set_base_rates(self.labels, self.catalog.base_rates())
        metrics.set_walkforward_hit_rates(self.labels, self.catalog.order, self.catalog.walkforward_hit_rates())

    async def availability(self, refresh: bool = False) -> Availability:
        """Stage load reports combined with the store catalog (cached once both stages have answered)."""
        await self.follow_reloads()
        return await self._availability(refresh)

    async def _availability(self, refresh: bool) -> Availability:
        # Until both stages have answered once (start-up), every caller asks again rather than serve a
        # cached "not reachable": another worker may already have told the client the service is ready.
        refresh = refresh or not self._stages_answered
        ttl = STATUS_TTL_OK if self._avail.stages_reachable else STATUS_TTL_RETRY
        if not refresh and time.monotonic() - self._avail.checked_at < ttl:
            return self._avail
        asked = time.monotonic()
        async with self._avail_lock:
            if self._avail.checked_at >= asked:  # answered while this call waited for the lock
                return self._avail
            if not refresh and time.monotonic() - self._avail.checked_at < ttl:
                return self._avail
            # Versions imported since the start are named, so the stage worker that answers loads them if it lacks them.
            wants = (sorted(self.added[1]), sorted(self.added[2]))
            s1, s2 = await asyncio.gather(*(st.status(want) for st, want in zip(self.stages, wants, strict=True)))
            self._avail = combine(self.catalog, s1, s2)
            self._stages_answered = self._stages_answered or self._avail.stages_reachable
            metrics.set_loaded(self.labels, self._avail.loaded)
            return self._avail

    async def active_version(self) -> str | None:
        """The stored active version if it serves, else the first serving one in fallback order."""
        avail = await self.availability()
        wanted = await self.active.get() or self.settings.default_version
        chosen = wanted if wanted in avail.loaded else next(iter(avail.loaded), None)
        if chosen != self._published_active:
            if chosen != wanted:
                logger.warning("active version %s is not loaded; falling back to %s", wanted, chosen)
            metrics.set_active(self.labels, chosen)
            self._published_active = chosen
        return chosen

    def check_known(self, version: str, field: str | None = None) -> VersionEntry:
        """The version's catalog entry, or the one unknown-version error (404 in a path, 422 in a body field)."""
        if not self.catalog.known(version):
            raise unknown_version(version, self.catalog.order, field)
        return self.catalog.entries[version]

    async def resolve(self, requested: str | None, field: str = "version") -> tuple[str, VersionEntry]:
        """The version a request uses (explicit or active), or the error that says why it cannot."""
        avail = await self.availability()
        if requested is None:
            version = await self.active_version()
            if version is None:
                raise VersionUnavailable(f"no model version is loaded: {avail.reasons()}")
            return version, self.catalog.entries[version]
        entry = self.check_known(requested, field)
        await self.require_loaded(requested, field, avail)
        return requested, entry

    async def require_loaded(self, version: str, field: str | None = None, avail: Availability | None = None) -> None:
        """503 unless every stage of a configured version is loaded."""
        avail = avail or await self.availability()
        if version not in avail.loaded:
            raise version_unavailable(version, avail.failed.get(version, "not loaded"), avail.loaded, field)

    async def loaded_entries(self) -> list[tuple[str, VersionEntry]]:
        """Every serving version in fallback order (503 when none serves)."""
        avail = await self.availability()
        if not avail.loaded:
            raise VersionUnavailable(f"no model version is loaded: {avail.reasons()}")
        return [(v, self.catalog.entries[v]) for v in avail.loaded]

    async def switch(self, version: str) -> dict[str, Any]:
        """Persist a new active version (every worker picks it up within the state TTL)."""
        self.check_known(version)
        await self.require_loaded(version, avail=await self.availability(refresh=True))
        previous = await self.active_version()
        try:
            await asyncio.to_thread(self._write_active, version)
        except Exception as exc:
            eid = error_id()  # the driver's line (host, port, database, user) goes to the log only
            logger.warning("error %s: state database unavailable, switch to %s: %s", eid, version, _first_line(exc))
            message = "the state database is unavailable, the active version was not changed; retry later"
            raise ApiError(
                with_error_id(message, eid),
                status=503,
                reason="database_unavailable",
            ) from exc
        self.adopt(version, previous)
        return {"active_version": await self.active_version(), "previous_version": previous}

    def adopt(self, version: str, previous: str | None) -> None:
        """After a committed switch (here or in the promoter's transaction): this worker uses it at once."""
        self.active.put(version)
        logger.info("active model version switched: %s -> %s", previous, version)

    async def reload(self) -> dict[str, Any]:
        """Admin: serve the configured versions imported into the model store since the start, in every worker.

        A new models generation goes to the state database; this worker reloads at once, every other
        entry worker on its next request after the state TTL (this call waits that long before answering).
        """
        if self.generation is None or self._write_generation is None:
            raise ApiError("reloading is not configured in this service", status=409, reason="conflict")
        before = await self.availability(refresh=True)
        if not before.failed:  # every configured version serves: nothing to load anywhere
            return {"loaded": list(before.loaded), "added": [], "failed": {}}
        token = f"{time.time_ns():x}-{secrets.token_hex(4)}"
        try:
            await asyncio.to_thread(self._write_generation, token)
        except Exception as exc:
            eid = error_id()
            logger.warning("error %s: state database unavailable, reload: %s", eid, _first_line(exc))
            message = "the state database is unavailable, nothing was reloaded; retry later"
            raise ApiError(with_error_id(message, eid), status=503, reason="database_unavailable") from exc
        self.generation.put(token)
        for _ in range(2):  # a reload already under way for an older generation first, then this one
            await self.follow_reloads(bounded=False)
        await asyncio.sleep(self.settings.state_ttl_seconds)  # every worker's cached generation is stale now
        avail = self._avail
        added = [v for v in avail.loaded if v not in before.loaded]
        logger.info("models reloaded: serving %s (added: %s)", ", ".join(avail.loaded), ", ".join(added) or "none")
        return {"loaded": list(avail.loaded), "added": added, "failed": dict(avail.failed)}

    async def follow_reloads(self, bounded: bool = True) -> None:
        """Reload this worker's catalog once the models generation changed (a cached read while it has not).

        Requests arriving meanwhile wait for the reload at most RELOAD_WAIT_SECONDS, then go on with what
        served before: a version not yet loaded everywhere keeps its 503 a moment longer, no other fails.
        """
        if self.generation is None:
            return
        token = await self.generation.get()
        if token is None or token == self._seen_generation:
            return
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload_catalog(token))
        await asyncio.wait({self._reloading}, timeout=RELOAD_WAIT_SECONDS if bounded else None)

    async def _reload_catalog(self, token: str) -> None:
        """Read the store entries of configured versions that were missing, then ask the stages to load them."""
        missing = tuple(v for v in self.catalog.order if self.catalog.entries[v].problem is not None)
        try:
            found = {}
            if missing:
                fresh = await asyncio.to_thread(self._read_catalog, missing)
                found = {v: e for v, e in fresh.entries.items() if e.problem is None}
            # In place: every part holding the catalog (outcome log, promoter) sees the new entries.
            self.catalog.entries.update(found)
            for version, entry in self.catalog.entries.items():  # the stages load what they lack of these
                if entry.problem is None and version not in self._avail.loaded:
                    for n in entry.stages:
                        self.added[n].add(version)
            if found:
                self._publish_catalog()
                logger.info("models generation %s: found %s in the model store", token, ", ".join(found))
            await self._availability(refresh=True)
        except Exception:  # noqa: BLE001 - the last catalog keeps serving; another reload retries
            logger.exception("models generation %s: reload failed; serving what was loaded before", token)
        finally:
            self._seen_generation = token


def combine(catalog: Catalog, s1: dict | None, s2: dict | None) -> Availability:
    """Which versions serve, from the catalog and the two stages' load reports."""
    out = Availability(stages_reachable=s1 is not None and s2 is not None, checked_at=time.monotonic())
    for version in catalog.order:
        entry = catalog.entries[version]
        if entry.problem:
            out.failed[version] = entry.problem
        elif s1 is None:
            out.failed[version] = "stage 1 service is not reachable"
        elif version not in s1.get("loaded", []):
            out.failed[version] = s1.get("failed", {}).get(version, "stage 1 model not loaded")
        elif entry.has_stage2 and s2 is None:
            out.failed[version] = "stage 2 service is not reachable"
        elif entry.has_stage2 and version not in s2.get("loaded", []):  # type: ignore[union-attr]
            out.failed[version] = s2.get("failed", {}).get(version, "stage 2 model not loaded")  # type: ignore[union-attr]
        else:
            out.loaded.append(version)
    return out


def describe(entry: VersionEntry, avail: Availability, active: str | None) -> dict[str, Any]:
    """GET /reversal/models/{version}'s body."""
    version, spec = entry.version, entry.spec
    loaded = version in avail.loaded
    stages: dict[str, Any] = {}
    for n in (1, 2):
        st = entry.stages.get(n)
        stages[f"stage{n}"] = {
            "in_store": st is not None,
            "tag": st.tag if st else None,
            "loaded": loaded and st is not None,
        }
    if spec is not None and not entry.has_stage2:
        stages["stage2"]["direction_rule"] = sig.NO_STAGE2_RULE
    meta = entry.metadata
    return {
        "version": version,
        "name": (spec.name if spec else "") or meta.get("name", version),
        "active": version == active,
        "loaded": loaded,
        "error": None if loaded else avail.failed.get(version, entry.problem),
        "stages": stages,
        "threshold": spec.threshold if spec else None,
        "window": spec.window if spec else None,
        "min_candles": spec.min_candles if spec else None,
        "features": list(spec.features) if spec else [],
        "label_params": spec.label_params if spec else {},
        "domain": entry.domain.to_metadata() if entry.domain is not None else None,
        "metrics": {f"stage{n}": st.metadata.get("metrics", {}) for n, st in entry.stages.items()},
    }


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(exc).__name__])[0][:200]
