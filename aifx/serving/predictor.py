"""The predictor: each route's request walks the steps in order, entering each module once.

parse (routes) -> candles (stored_inputs) -> version (registry, ab_tests) -> bar (bars) -> windows (windows,
window_cache) -> scores and decisions (scores, runners) -> side effects (effects, ab_tests) -> answer (answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aifx import metrics
from aifx import signal as sig
from aifx.candles import Candles
from aifx.drift import DriftWindows
from aifx.serving import answers, bars, effects, stored_inputs, windows
from aifx.serving.ab_tests import ABTests
from aifx.serving.bars import Job
from aifx.serving.catalog import VersionEntry
from aifx.serving.errors import ApiError, VersionUnavailable, now_iso
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.registry import VersionRegistry
from aifx.serving.schemas import CompareRequest, InvalidItem, PredictRequest, _Inputs
from aifx.serving.scores import Scorer
from aifx.serving.window_cache import WindowCache
from aifx.serving.windows import Prepared
from experiments import Assignment
from runners.stage import DirectionClassifier, ReversalDetector


class Predictor:
    """The predict, batch, compare and legacy routes' path over the worker's two stage runners."""

    def __init__(
        self,
        registry: VersionRegistry,
        detector: ReversalDetector,
        direction: DirectionClassifier,
        ab: ABTests,
        outcomes: OutcomeLog | None = None,
        drift: DriftWindows | None = None,
        cache: WindowCache | None = None,
    ) -> None:
        self.registry = registry
        self.ab = ab
        self.outcomes = outcomes
        self.drift = drift  # input drift windows (aifx/drift.py); PSI is computed off the request path
        self.scorer = Scorer(detector, direction, cache if cache is not None else WindowCache(0))

    @property
    def cache(self) -> WindowCache:
        """Windows already scored in this worker, by content."""
        return self.scorer.cache

    @cache.setter
    def cache(self, cache: WindowCache) -> None:
        self.scorer.cache = cache

    @property
    def detector(self) -> ReversalDetector:
        return self.scorer.detector

    @property
    def direction(self) -> DirectionClassifier:
        return self.scorer.direction

    @property
    def health(self) -> Any:
        """Scored and failed windows per version (aifx.promotion.Tally), read by the promoter."""
        return self.scorer.health

    async def score_each(self, batch: Sequence[Prepared], served: int | None = None) -> list[sig.Decision | ApiError]:
        """Each window's decision or error; the first `served` windows (default all) count as served predictions."""
        out = self.scorer.decide(batch)
        made = list(zip(batch, out, strict=True))[:served]
        if made:
            effects.observe(self.registry.labels, self.drift, self.registry.settings.pip_sizes, made)
        return out

    async def predict(self, req: PredictRequest, trusted: bool = False) -> dict[str, Any]:
        """One prediction (under an active experiment: the user's variant, committed before answering).

        A trusted (outcome or admin token) request logs its bar with every other loaded version scored on the
        same candles in the same stage calls; an anonymous one logs nothing (trusted_bars scores closed bars).
        """
        assigned = await self.ab.assign(req.user_id, req.version)
        candles = await self.candles(req, windows.request_candles(req))
        job = await self._plan(req, await self._prepare(req, assigned, candles), candles, trusted)
        scored = await self.score_each([job.served, *job.shadows], served=1)
        decision = scored[0]
        if isinstance(decision, ApiError):
            raise decision
        effects.log_bar(self.outcomes, job, decision, scored[1:])
        data = answers.prediction(req.pair, req.timeframe, job, decision, self.outcomes)
        if assigned is not None:
            data |= await self.ab.record(assigned, req.user_id or "", decision, bars.bar_key(job))
        return data

    async def predict_many(
        self, items: Sequence[PredictRequest | InvalidItem], trusted: bool = False
    ) -> dict[str, Any]:
        """Many predictions: each item succeeds or fails on its own (shadow scoring and logging as predict)."""
        results: list[dict[str, Any] | None] = [None] * len(items)
        ready: list[tuple[int, PredictRequest, Job]] = []
        assigned: dict[int, Assignment] = {}
        parsed = windows.batch_candles(items)
        need = await self._need()
        for i, req in enumerate(items):
            try:
                if isinstance(req, InvalidItem):  # validated with the body; only its message was kept
                    raise ApiError(req.message, status=422, reason="validation")
                variant = await self.ab.assign(req.user_id, req.version)
                sent = parsed.get(i)
                if isinstance(sent, ApiError):
                    raise sent
                candles = await self.candles(req, sent, need)
                served = await self._prepare(req, variant, candles, defer=True)
                ready.append((i, req, await self._plan(req, served, candles, trusted, defer=True)))
                if variant is not None:
                    assigned[i] = variant
            except ApiError as exc:
                metrics.count_error(exc.reason)
                results[i] = answers.failed_item(i, exc.message)
        ready = _fill(ready, results)
        jobs = [job for _, _, job in ready]
        flat = await self.score_each([j.served for j in jobs] + [p for j in jobs for p in j.shadows], served=len(jobs))
        shadow_out = iter(flat[len(jobs) :])
        made: list[tuple[tuple[int, PredictRequest, Job], sig.Decision]] = []
        for (i, req, job), d in zip(ready, flat[: len(jobs)], strict=True):
            own_shadows = [next(shadow_out) for _ in job.shadows]
            if isinstance(d, ApiError):
                metrics.count_error(d.reason)
                results[i] = answers.failed_item(i, d.message)
                continue
            made.append(((i, req, job), d))
            effects.log_bar(self.outcomes, job, d, own_shadows)
        # the bars that answers (a long or short's levels) and experiments ask for, found together
        bars.find_bars(self.outcomes, [job for (i, _, job), d in made if d.signal != sig.HOLD or i in assigned])
        stamp = now_iso()  # one answer time for the whole batch
        for (_, req, job), d in made:
            job.answer = answers.prediction(req.pair, req.timeframe, job, d, self.outcomes, stamp)
        recorded = await self.ab.record_many(
            {i: (assigned[i], req.user_id or "", d, bars.bar_key(job)) for (i, req, job), d in made if i in assigned}
        )
        for (i, _req, job), _d in made:
            extra = recorded.get(i, {})
            if isinstance(extra, ApiError):
                metrics.count_error(extra.reason)
                results[i] = answers.failed_item(i, extra.message)
            else:
                results[i] = answers.succeeded_item((job.answer or {}) | extra)
        return {"results": results}

    async def compare(self, req: CompareRequest) -> dict[str, Any]:
        """The same input through several versions (serves no prediction and feeds no drift window)."""
        if req.versions:
            resolved = [await self.registry.resolve(v, "versions") for v in dict.fromkeys(req.versions)]
        else:
            resolved = await self.registry.loaded_entries()
        candles = await self.candles(req, windows.request_candles(req))
        batch = [windows.cached_window(self.cache, req, v, e, candles) for v, e in resolved]
        decisions = _all_or_first_error(await self.score_each(batch, served=0))
        metrics.COMPARES.inc()
        return answers.comparison(req, batch, decisions)

    async def predict_legacy(self, req: PredictRequest) -> dict[str, Any]:
        """The old engine's {prediction, confidence, factors}."""
        prepared = await self._prepare(req, candles=await self.candles(req, windows.request_candles(req)))
        (d,) = _all_or_first_error(await self.score_each([prepared]))
        return answers.legacy(prepared, d)

    async def candles(self, req: _Inputs, sent: Candles | None, need: int | None = None) -> Candles | None:
        """The request's candles, topped up from the trusted store when short; the store's when none were sent.

        need: the most candles a loaded version takes (_need(); a batch asks once for all its items).
        """
        if req.features:
            return None
        need = need if need is not None else await self._need()
        if need is None:
            return sent
        return await stored_inputs.request_candles(self.outcomes, req.pair, req.timeframe, sent, req.bar_time, need)

    async def _need(self) -> int | None:
        """The most candles a loaded version's window is computed from (None: no version is loaded)."""
        try:
            return max(e.spec.min_candles for _, e in await self.registry.loaded_entries() if e.spec is not None)
        except (ApiError, ValueError):
            return None

    async def _prepare(
        self, req: PredictRequest, assigned: Assignment | None = None, candles: Any = None, defer: bool = False
    ) -> Prepared:
        """The request's window for its version: the experiment's variant, the explicit one or the active one."""
        if assigned is None:
            version, entry = await self.registry.resolve(req.version)
        else:
            version, entry = await self._variant(assigned)
        return windows.cached_window(self.cache, req, version, entry, candles, defer)

    async def _variant(self, assigned: Assignment) -> tuple[str, VersionEntry]:
        """The assigned variant's version, or a 503 that names the experiment (no silent fallback)."""
        try:
            return await self.registry.resolve(assigned.model_version)
        except ApiError as exc:
            raise VersionUnavailable(
                f"experiment {assigned.experiment_id} serves this user variant {assigned.variant}: {exc.message}"
            ) from None

    async def _plan(
        self, req: PredictRequest, served: Prepared, candles: Candles | None, trusted: bool, defer: bool = False
    ) -> Job:
        return await bars.plan(self.outcomes, self.registry, self.cache, req, served, candles, trusted, defer)


Ready = list[tuple[int, PredictRequest, Job]]


def _fill(ready: Ready, results: list[Any]) -> Ready:
    """A batch's deferred windows computed together; an item whose own window fails gets its error, a shadow
    window that fails is dropped (and counted), never its item."""
    failed = windows.fill_rows([p for _, _, job in ready for p in (job.served, *job.shadows)])
    kept = []
    for i, req, job in ready:
        if id(job.served) in failed:
            exc = failed[id(job.served)]
            metrics.count_error(exc.reason)
            metrics.count_evaluation_drop("shadow", len(job.shadows))
            results[i] = answers.failed_item(i, exc.message)
            continue
        dropped = [p for p in job.shadows if id(p) in failed]
        if dropped:
            metrics.count_evaluation_drop("shadow", len(dropped))
        job.shadows = [p for p in job.shadows if id(p) not in failed]
        kept.append((i, req, job))
    return kept


def _all_or_first_error(out: Sequence[sig.Decision | ApiError]) -> list[sig.Decision]:
    """Every window's decision; the first window without a valid output raises."""
    failed = next((d for d in out if isinstance(d, ApiError)), None)
    if failed is not None:
        raise failed
    return [d for d in out if isinstance(d, sig.Decision)]
