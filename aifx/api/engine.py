"""The prediction engine behind the routes: versions, inputs, stage calls, semantics.

It never runs a model itself: Stage 1 and Stage 2 are callables (the stage services,
remote when served, local in in-process tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from aifx import metrics
from aifx import signal as sig
from aifx.api import inputs
from aifx.api.catalog import Catalog, VersionEntry
from aifx.api.errors import (
    ApiError,
    BadCandles,
    NotFound,
    UnknownVersion,
    VersionUnavailable,
    format_errors,
    now_iso,
)
from aifx.api.experiments import Experiments
from aifx.api.schemas import CompareRequest, PredictRequest, _Inputs
from aifx.api.stages import StageCaller, Window, fetch_status
from aifx.settings import Settings
from aifx.state import CachedActiveVersion
from aifx.versions import VersionSpec
from experiments import Assignment

logger = logging.getLogger("bentoml.aifx.engine")
StatusFn = Callable[[], Awaitable[dict[str, Any]]]
STATUS_TTL_OK = 30.0  # stage load reports do not change while a stage process lives
STATUS_TTL_RETRY = 1.0


@dataclass
class Availability:
    """Which configured versions serve (all their stages loaded) and why the others do not."""

    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stages_reachable: bool = False
    checked_at: float = float("-inf")


@dataclass
class Prepared:
    """One version's window for one request, ready for the stages."""

    version: str
    entry: VersionEntry
    rows: np.ndarray
    closes: np.ndarray | None = None

    @property
    def spec(self) -> VersionSpec:
        assert self.entry.spec is not None
        return self.entry.spec


def _window(req: _Inputs, version: str, entry: VersionEntry, candles: Any = None) -> Prepared:
    """Rows for a version from `features` (when present) or from the request's candles."""
    spec = entry.spec
    assert spec is not None
    if req.features:
        return Prepared(version, entry, inputs.feature_rows(req.features, spec))
    if candles is None:
        candles = inputs.to_candles(req.data or [])
    return Prepared(version, entry, inputs.candle_rows(candles, spec), candles.close)


class Engine:
    """Versions, active-version state, stage calls and the seed's prediction semantics."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        detect: StageCaller,
        classify: StageCaller,
        detector_status: StatusFn,
        direction_status: StatusFn,
        active: CachedActiveVersion,
        experiments: Experiments,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.detect = detect
        self.classify = classify
        self._status_fns = (detector_status, direction_status)
        self.active = active
        self.experiments = experiments
        self.labels = metrics.Labels(catalog.order)
        metrics.set_base_rates(self.labels, catalog.base_rates())
        self._avail = Availability()
        self._avail_lock = asyncio.Lock()
        self._stages_answered = False
        self._published_active: str | None = None

    # ---- versions -------------------------------------------------------------------------

    async def availability(self, refresh: bool = False) -> Availability:
        """Stage load reports combined with the store catalog (cached once both stages have answered)."""
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
            timeout = self.settings.stage_timeout_seconds
            s1, s2 = await asyncio.gather(
                *(fetch_status(n, fn, timeout) for n, fn in zip(("stage 1", "stage 2"), self._status_fns, strict=True))
            )
            self._avail = combine(self.catalog, s1, s2)
            self._stages_answered = self._stages_answered or self._avail.stages_reachable
            metrics.set_loaded(self.labels, self._avail.loaded)
            return self._avail

    async def active_version(self) -> str | None:
        """The stored active version if it serves, else the first serving one in fallback order."""
        avail = await self.availability()
        wanted = self.active.get() or self.settings.default_version
        chosen = wanted if wanted in avail.loaded else next(iter(avail.loaded), None)
        if chosen != self._published_active:
            if chosen != wanted:
                logger.warning("active version %s is not loaded; falling back to %s", wanted, chosen)
            metrics.set_active(self.labels, chosen)
            self._published_active = chosen
        return chosen

    async def resolve(self, requested: str | None) -> tuple[str, VersionEntry]:
        """The version a request uses (explicit or active), or a 4xx/503 that says why not."""
        avail = await self.availability()
        if requested is None:
            version = await self.active_version()
            if version is None:
                raise VersionUnavailable(f"no model version is loaded: {_reasons(avail)}")
            return version, self.catalog.entries[version]
        if not self.catalog.known(requested):
            raise UnknownVersion(
                f"unknown model version {requested!r}; configured versions: {', '.join(self.catalog.order)}"
            )
        if requested not in avail.loaded:
            reason = avail.failed.get(requested, "not loaded")
            loaded = ", ".join(avail.loaded) or "none"
            raise VersionUnavailable(
                f"model version {requested} is not available ({reason}); loaded versions: {loaded}"
            )
        return requested, self.catalog.entries[requested]

    # ---- predictions ------------------------------------------------------------------------

    async def score(self, batch: Sequence[Prepared]) -> list[sig.Decision]:
        """Stage 1 for every window, Stage 2 only for windows where Stage 1 fires."""
        if not batch:
            return []
        p1 = await self.detect([_stage_input(p) for p in batch])
        decisions: list[sig.Decision | None] = [None] * len(batch)
        need2 = []
        for i, (p, prob) in enumerate(zip(batch, p1, strict=True)):
            if not sig.fires(prob, p.spec.threshold):
                decisions[i] = sig.hold(prob)
            elif p.entry.has_stage2:
                need2.append(i)
            else:
                decisions[i] = sig.by_rule(prob, _decline_evidence(p))
        if need2:
            p2 = await self.classify([_stage_input(batch[i]) for i in need2])
            for i, prob2 in zip(need2, p2, strict=True):
                decisions[i] = sig.with_stage2(p1[i], prob2)
        out = [d for d in decisions if d is not None]
        for p, d in zip(batch, out, strict=True):
            metrics.observe_prediction(self.labels, p.version, d.signal, d.stage1_prob, d.confidence)
        return out

    async def prepare(self, req: PredictRequest, assigned: Assignment | None = None) -> Prepared:
        """The request's window for its version: the experiment's variant, the explicit one or the active one."""
        if assigned is None:
            version, entry = await self.resolve(req.version)
        else:
            version, entry = await self._resolve_variant(assigned)
        return _window(req, version, entry)

    async def _resolve_variant(self, assigned: Assignment) -> tuple[str, VersionEntry]:
        """The assigned variant's version, or a 503 that names the experiment (no silent fallback)."""
        try:
            return await self.resolve(assigned.model_version)
        except ApiError as exc:
            raise VersionUnavailable(
                f"experiment {assigned.experiment_id} serves this user variant {assigned.variant}: {exc.message}"
            ) from None

    async def predict(self, req: PredictRequest) -> dict[str, Any]:
        """POST /reversal/predict (under an active experiment: the user's variant, committed before answering)."""
        assigned = await self.experiments.assign(req.user_id, req.version)
        prepared = await self.prepare(req, assigned)
        (decision,) = await self.score([prepared])
        data = prediction_data(req.pair, req.timeframe, prepared.version, decision)
        if assigned is not None:
            data |= await self.experiments.record(assigned, req.user_id or "", decision)
        return data

    async def predict_many(self, items: Sequence[PredictRequest | dict[str, Any]]) -> dict[str, Any]:
        """POST /reversal/predict/batch: each item succeeds or fails on its own."""
        results: list[dict[str, Any] | None] = [None] * len(items)
        ready: list[tuple[int, PredictRequest, Prepared]] = []
        assigned: dict[int, Assignment] = {}
        for i, item in enumerate(items):
            try:
                req = item if isinstance(item, PredictRequest) else PredictRequest.model_validate(item)
                variant = await self.experiments.assign(req.user_id, req.version)
                ready.append((i, req, await self.prepare(req, variant)))
                if variant is not None:
                    assigned[i] = variant
            except ValidationError as exc:
                metrics.count_error("validation")
                results[i] = {"success": False, "data": None, "error": f"items[{i}]: {describe_errors(exc)}"}
            except ApiError as exc:
                metrics.count_error(exc.reason)
                results[i] = {"success": False, "data": None, "error": f"items[{i}]: {exc.message}"}
        decisions = await self.score([p for _, _, p in ready])
        served = list(zip(ready, decisions, strict=True))
        recorded = await self.experiments.record_many(
            {i: (assigned[i], req.user_id or "", d) for (i, req, _), d in served if i in assigned}
        )
        for (i, req, p), d in served:
            extra = recorded.get(i, {})
            if isinstance(extra, ApiError):
                metrics.count_error(extra.reason)
                results[i] = {"success": False, "data": None, "error": f"items[{i}]: {extra.message}"}
            else:
                data = prediction_data(req.pair, req.timeframe, p.version, d) | extra
                results[i] = {"success": True, "data": data, "error": None}
        return {"results": results}

    async def compare(self, req: CompareRequest) -> dict[str, Any]:
        """POST /reversal/compare: the same input through several versions."""
        if req.versions:
            resolved = [await self.resolve(v) for v in dict.fromkeys(req.versions)]
        else:
            avail = await self.availability()
            if not avail.loaded:
                raise VersionUnavailable(f"no model version is loaded: {_reasons(avail)}")
            resolved = [(v, self.catalog.entries[v]) for v in avail.loaded]
        candles = None if req.features else inputs.to_candles(req.data or [])
        batch = [_window(req, v, e, candles) for v, e in resolved]
        decisions = await self.score(batch)
        predictions = {
            p.version: {
                "signal": d.signal,
                "confidence": d.confidence,
                "stage1_prob": d.stage1_prob,
                "stage2_prob": d.stage2_prob,
                "model_version": p.version,
            }
            for p, d in zip(batch, decisions, strict=True)
        }
        consensus, disagreement = sig.consensus(d.signal for d in decisions)
        return {
            "pair": req.pair,
            "timeframe": req.timeframe,
            "predictions": predictions,
            "consensus": consensus,
            "disagreement": disagreement,
            "timestamp": now_iso(),
        }

    async def predict_legacy(self, req: PredictRequest) -> dict[str, Any]:
        """POST /predict: the old engine's {prediction, confidence, factors}."""
        prepared = await self.prepare(req)
        (d,) = await self.score([prepared])
        factors = {
            **sig.factors(d),
            "stage1_prob": d.stage1_prob,
            "stage2_prob": d.stage2_prob,
            "model_version": prepared.version,
        }
        return {"prediction": d.signal, "confidence": d.confidence, "factors": factors}

    # ---- model management -------------------------------------------------------------------

    async def models(self) -> dict[str, Any]:
        """GET /reversal/models."""
        avail = await self.availability()
        active = await self.active_version()
        return {
            "active_version": active,
            "default": self.settings.default_version,
            "fallback_order": list(self.catalog.order),
            "versions": [self._describe(v, avail, active) for v in self.catalog.order],
        }

    async def model(self, version: str) -> dict[str, Any]:
        """GET /reversal/models/{version}."""
        if not self.catalog.known(version):
            raise NotFound(f"unknown model version {version!r}; configured versions: {', '.join(self.catalog.order)}")
        return self._describe(version, await self.availability(), await self.active_version())

    async def switch(self, version: str) -> dict[str, Any]:
        """POST /reversal/models/{version}/switch: persist the new active version."""
        if not self.catalog.known(version):
            raise NotFound(f"unknown model version {version!r}; configured versions: {', '.join(self.catalog.order)}")
        avail = await self.availability(refresh=True)
        if version not in avail.loaded:
            raise ApiError(
                f"cannot switch to {version}: {avail.failed.get(version, 'not loaded')}; "
                f"loaded versions: {', '.join(avail.loaded) or 'none'}",
                status=409,
                reason="version_unavailable",
            )
        previous = await self.active_version()
        self.active.set(version)
        logger.info("active model version switched: %s -> %s", previous, version)
        return {"active_version": await self.active_version(), "previous_version": previous}

    async def health(self) -> tuple[dict[str, Any], int]:
        """GET /health (flat, as in the seed) and its HTTP status."""
        avail = await self.availability()
        active = await self.active_version()
        if not avail.loaded:
            status = "unhealthy"
        elif avail.failed:
            status = "degraded"
        else:
            status = "healthy"
        body = {
            "status": status,
            "model_loaded": bool(avail.loaded),
            "model_version": active,
            "timestamp": now_iso(),
            "environment": self.settings.environment,
            "loaded_versions": list(avail.loaded),
            "failed_versions": dict(avail.failed),
        }
        return body, 200 if avail.loaded else 503

    def _describe(self, version: str, avail: Availability, active: str | None) -> dict[str, Any]:
        entry = self.catalog.entries[version]
        spec = entry.spec
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
            "metrics": {f"stage{n}": st.metadata.get("metrics", {}) for n, st in entry.stages.items()},
        }


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


def prediction_data(pair: str, timeframe: str, version: str, d: sig.Decision) -> dict[str, Any]:
    """The seed's prediction object."""
    return {
        "pair": pair,
        "timeframe": timeframe,
        "signal": d.signal,
        "confidence": d.confidence,
        "stage1_prob": d.stage1_prob,
        "stage2_prob": d.stage2_prob,
        "model_version": version,
        "factors": sig.factors(d),
        "timestamp": now_iso(),
    }


def describe_errors(exc: ValidationError) -> str:
    """A pydantic ValidationError as one readable line."""
    return format_errors(exc.errors(include_url=False, include_context=False, include_input=False))


def _stage_input(p: Prepared) -> Window:
    return p.version, p.rows


def _decline_evidence(p: Prepared) -> float:
    """Log return over the window: the ret_1 column's sum, or from closes when ret_1 is absent."""
    if "ret_1" in p.spec.features:
        return sig.window_ret_1_sum(p.rows, p.spec.features)
    if p.closes is not None and len(p.closes) > p.spec.window:
        return float(np.log(p.closes[-1] / p.closes[-p.spec.window - 1]))
    raise BadCandles(f"{p.version} has no Stage 2 and no ret_1 feature: send candles (`data`) for its direction")


def _reasons(avail: Availability) -> str:
    return "; ".join(f"{v}: {r}" for v, r in avail.failed.items()) or "none configured"
