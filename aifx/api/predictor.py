"""The predictor: request inputs -> windows -> Stage 1, Stage 2 where it fires -> the seed's answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from aifx import instruments, metrics
from aifx import signal as sig
from aifx.api import context, inputs, stages, stored_inputs
from aifx.api.ab_tests import ABTests
from aifx.api.catalog import VersionEntry
from aifx.api.errors import (
    ApiError,
    BadCandles,
    StageUnavailable,
    VersionUnavailable,
    error_id,
    now_iso,
    with_error_id,
)
from aifx.api.outcome_log import Bar, OutcomeLog
from aifx.api.registry import VersionRegistry
from aifx.api.schemas import CompareRequest, InvalidItem, PredictRequest, _Inputs
from aifx.api.window_cache import Scored, WindowCache, content_key
from aifx.candles import Candles
from aifx.drift import DriftWindows
from aifx.promotion import Tally
from aifx.versions import VersionSpec
from experiments import Assignment
from runners.stage import DirectionClassifier, ReversalDetector, Window

logger = context.get_logger("bentoml.aifx.predictor")


@dataclass
class Prepared:
    """One version's window for one request, ready for the stages."""

    version: str
    entry: VersionEntry
    rows: np.ndarray
    closes: np.ndarray | None = None
    pair: str = ""  # the request's pair and timeframe: the input-drift window it counts in
    timeframe: str = ""
    in_domain: bool | None = None  # inside the version's training domain (None: the domain is unknown)
    tail: Candles | None = None  # deferred: the candles `rows` will be computed from, with the batch's others
    key: bytes | None = None  # the window's content key in the worker's WindowCache (candle windows only)
    scored: Scored | None = None  # what the cache already knew about this window

    @property
    def spec(self) -> VersionSpec:
        assert self.entry.spec is not None
        return self.entry.spec


class Predictor:
    """Runs the two stage runners for the predict, batch, compare and legacy routes."""

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
        self.detector = detector
        self.direction = direction
        self.ab = ab
        self.outcomes = outcomes
        self.drift = drift  # input drift windows (aifx/drift.py); PSI is computed off the request path
        self.health = Tally()  # scored and failed windows per version, read by the promoter
        self.cache = cache if cache is not None else WindowCache(0)  # windows already scored here, by content

    async def score(self, batch: Sequence[Prepared], served: int | None = None) -> list[sig.Decision]:
        """Stage 1 for every window, Stage 2 only where it fires; the first window without a valid output raises."""
        out = await self.score_each(batch, served)
        failed = next((d for d in out if isinstance(d, ApiError)), None)
        if failed is not None:
            raise failed
        return [d for d in out if isinstance(d, sig.Decision)]

    async def score_each(self, batch: Sequence[Prepared], served: int | None = None) -> list[sig.Decision | ApiError]:
        """Each window's decision, or the error of a window whose model output is not a probability.

        Each window's output is checked on its own: one window's NaN fails only the request it belongs
        to (a batch item, a shadow), never reaches the metrics. Only the
        first `served` windows (default all) are served predictions; the rest are shadow scores.
        """
        if not batch:
            return []
        rid = context.current() or ""
        try:
            return await self._score_each(batch, rid, served)
        except Exception:
            for p in batch:  # the stage call failed for every version in it (a promotion guardrail)
                self.health.record(p.version, False)
            raise

    async def _score_each(
        self, batch: Sequence[Prepared], rid: str, served: int | None
    ) -> list[sig.Decision | ApiError]:
        p1: list[Any] = [p.scored.p1 if p.scored is not None else None for p in batch]
        need1 = [i for i, prob in enumerate(p1) if prob is None]
        if need1:
            found = stages.run(self.detector.detect, 1, [Window(batch[i].version, batch[i].rows, rid) for i in need1])
            for i, prob in zip(need1, found, strict=True):
                p1[i] = prob
        decisions: list[sig.Decision | ApiError | None] = [None] * len(batch)
        need2 = []
        for i, (p, prob) in enumerate(zip(batch, p1, strict=True)):
            if not _is_probability(prob):
                decisions[i] = invalid_output(1, p.version, prob)
            elif not sig.fires(prob, p.spec.threshold):
                decisions[i] = sig.hold(prob)
            elif p.entry.has_stage2:
                need2.append(i)
            else:
                decisions[i] = sig.by_rule(prob, _decline_evidence(p))
        p2 = {i: s.p2 for i in need2 if (s := batch[i].scored) is not None and s.p2 is not None}
        call2 = [i for i in need2 if i not in p2]
        if call2:
            windows = [Window(batch[i].version, batch[i].rows, rid) for i in call2]
            p2.update(zip(call2, stages.run(self.direction.classify, 2, windows), strict=True))
        for i in need2:
            ok = _is_probability(p2[i])
            decisions[i] = sig.with_stage2(p1[i], p2[i]) if ok else invalid_output(2, batch[i].version, p2[i])
        self._remember(batch, p1, p2)
        out = [d for d in decisions if d is not None]
        for p, d in zip(batch, out, strict=True):
            self.health.record(p.version, isinstance(d, sig.Decision))
        labels = self.registry.labels
        for p, d in zip(batch[:served], out[:served], strict=True):
            if isinstance(d, sig.Decision):
                metrics.observe_prediction(labels, p.version, d.signal, d.stage1_prob, d.confidence)
                if p.in_domain is False:
                    metrics.count_out_of_domain(labels, p.version)
                if self.drift is not None and (key := self._drift_key(p)) is not None:
                    self.drift.add(*key, p.version, p.rows[-1], d.stage1_prob)  # one row copy into its ring buffer
        return out

    def _drift_key(self, p: Prepared) -> tuple[str, str] | None:
        """(pair, timeframe) of a served window in canonical spelling; None for a pair not in the instrument
        table or no timeframe, so made-up pairs can neither evict real drift windows nor fill their own."""
        inst = instruments.instrument(p.pair, self.registry.settings.pip_sizes)
        timeframe = instruments.canonical_timeframe(p.timeframe)
        return None if inst is None or timeframe is None else (inst.name, timeframe)

    def _remember(self, batch: Sequence[Prepared], p1: list[Any], p2: dict[int, float]) -> None:
        """Keep the valid probabilities of candle windows for later requests about the same candles."""
        for i, p in enumerate(batch):
            if p.key is None or not _is_probability(p1[i]):
                continue
            scored = p.scored or Scored(p.rows)
            scored.p1 = float(p1[i])
            if i in p2 and _is_probability(p2[i]):
                scored.p2 = float(p2[i])
            self.cache.put(p.key, scored)

    def cached_window(
        self, req: _Inputs, version: str, entry: VersionEntry, candles: Candles | None, defer: bool = False
    ) -> Prepared:
        """window(), with the rows and stage outputs of a window already scored in this worker from the cache."""
        spec = entry.spec
        if candles is None or req.features or self.cache.size <= 0 or spec is None:
            return window(req, version, entry, candles, defer)
        key = content_key(_models_of(entry), inputs.candle_tail(candles, spec))
        hit = self.cache.get(key)
        if hit is None:
            prepared = window(req, version, entry, candles, defer)
        else:
            in_domain = entry.in_domain(req.pair, req.timeframe)
            prepared = Prepared(version, entry, hit.rows, candles.close, req.pair, req.timeframe, in_domain, scored=hit)
        prepared.key = key
        return prepared

    async def prepare(
        self, req: PredictRequest, assigned: Assignment | None = None, candles: Any = None, defer: bool = False
    ) -> Prepared:
        """The request's window for its version: the experiment's variant, the explicit one or the active one."""
        if assigned is None:
            version, entry = await self.registry.resolve(req.version)
        else:
            version, entry = await self._resolve_variant(assigned)
        return self.cached_window(req, version, entry, candles, defer)

    async def _resolve_variant(self, assigned: Assignment) -> tuple[str, VersionEntry]:
        """The assigned variant's version, or a 503 that names the experiment (no silent fallback)."""
        try:
            return await self.registry.resolve(assigned.model_version)
        except ApiError as exc:
            raise VersionUnavailable(
                f"experiment {assigned.experiment_id} serves this user variant {assigned.variant}: {exc.message}"
            ) from None

    async def predict(self, req: PredictRequest, trusted: bool = False) -> dict[str, Any]:
        """One prediction (under an active experiment: the user's variant, committed before answering).

        A trusted (outcome or admin token) request logs its bar for the outcome loop, with every other
        loaded version scored on the same candles in the same stage calls (once per bar), and gives its
        candles; an anonymous one logs nothing (aifx/api/trusted_bars.py scores the bars trusted candles close).
        """
        assigned = await self.ab.assign(req.user_id, req.version)
        candles = await self.candles(req, _candles(req))
        job = await self._job(req, await self.prepare(req, assigned, candles), candles, trusted)
        scored = await self.score_each([job.served, *job.shadows], served=1)
        decision = scored[0]
        if isinstance(decision, ApiError):
            raise decision
        data = self._answer(req, job, decision, scored[1:])
        if assigned is not None:
            data |= await self.ab.record(assigned, req.user_id or "", decision, _bar_of(job))
        return data

    async def candles(self, req: _Inputs, sent: Candles | None) -> Candles | None:
        """The request's candles, topped up from the trusted store when short; the store's when none were sent."""
        if req.features:
            return None
        try:
            need = max(e.spec.min_candles for _, e in await self.registry.loaded_entries() if e.spec is not None)
        except (ApiError, ValueError):
            return sent
        return await stored_inputs.request_candles(self.outcomes, req.pair, req.timeframe, sent, req.bar_time, need)

    async def _job(
        self, req: PredictRequest, served: Prepared, candles: Candles | None, trusted: bool, defer: bool = False
    ) -> Job:
        """The served window, the request's bar (trade levels) and, for a trusted request about a bar that may be
        logged, the shadow windows of the other versions."""
        log = self.outcomes
        if log is None or candles is None:
            return Job(served)
        bar = log.bar(req.pair, req.timeframe, candles)
        if bar is None or not trusted or bar.problem is not None:
            if trusted and bar is not None:
                metrics.count_evaluation_drop("bar")
            return Job(served, bar)
        log.trust(bar, candles, "predict")
        try:
            entries = dict(await self.registry.loaded_entries())
        except ApiError:  # nothing else serves now: log the served decision alone
            return Job(served, bar, logs=True)
        shadows = []
        for version in log.shadow_versions(bar, served.version, list(entries)):
            try:
                shadows.append(self.cached_window(req, version, entries[version], candles, defer))
            except ApiError:  # e.g. too few candles for that version: the shadow is dropped, never the request
                metrics.count_evaluation_drop("shadow")
        return Job(served, bar, shadows, logs=True)

    def _answer(
        self, req: PredictRequest, job: Job, decision: sig.Decision, shadows: Sequence[sig.Decision | ApiError]
    ) -> dict[str, Any]:
        """The seed's prediction object (with `trade` for a long or short) after logging the bar's decisions."""
        data = prediction_data(req.pair, req.timeframe, job.served.version, decision, job.served.in_domain)
        if job.bar is None or self.outcomes is None:
            return data
        if job.logs:
            logged = [(job.served.version, decision, 1)]
            for p, d in zip(job.shadows, shadows, strict=True):
                if isinstance(d, sig.Decision):
                    logged.append((p.version, d, 0))
                else:
                    metrics.count_evaluation_drop("shadow")
            self.outcomes.log(job.bar, logged)
        levels = self.outcomes.trade(job.bar, decision.signal)
        return data | {"trade": levels} if levels is not None else data

    async def predict_many(
        self, items: Sequence[PredictRequest | InvalidItem], trusted: bool = False
    ) -> dict[str, Any]:
        """Many predictions: each item succeeds or fails on its own (shadow scoring and logging as predict)."""
        results: list[dict[str, Any] | None] = [None] * len(items)
        ready: list[tuple[int, PredictRequest, Job]] = []
        assigned: dict[int, Assignment] = {}
        parsed = _candles_many(items)
        for i, req in enumerate(items):
            if isinstance(req, InvalidItem):  # validated with the body; only its message was kept
                metrics.count_error("validation")
                results[i] = _failed(i, req.message)
                continue
            try:
                variant = await self.ab.assign(req.user_id, req.version)
                candles = parsed.get(i)
                if isinstance(candles, ApiError):
                    raise candles
                candles = await self.candles(req, candles)
                served_window = await self.prepare(req, variant, candles, defer=True)
                ready.append((i, req, await self._job(req, served_window, candles, trusted, defer=True)))
                if variant is not None:
                    assigned[i] = variant
            except ApiError as exc:
                metrics.count_error(exc.reason)
                results[i] = _failed(i, exc.message)
        ready = _fill_rows(ready, results)
        jobs = [job for _, _, job in ready]
        flat = await self.score_each([j.served for j in jobs] + [p for j in jobs for p in j.shadows], served=len(jobs))
        shadow_out = iter(flat[len(jobs) :])
        served: list[tuple[tuple[int, PredictRequest, Job], sig.Decision]] = []
        for (i, req, job), d in zip(ready, flat[: len(jobs)], strict=True):
            own_shadows = [next(shadow_out) for _ in job.shadows]
            if isinstance(d, ApiError):
                metrics.count_error(d.reason)
                results[i] = _failed(i, d.message)
            else:
                served.append(((i, req, job), d))
                job.answer = self._answer(req, job, d, own_shadows)
        recorded = await self.ab.record_many(
            {i: (assigned[i], req.user_id or "", d, _bar_of(job)) for (i, req, job), d in served if i in assigned}
        )
        for (i, _req, job), _d in served:
            extra = recorded.get(i, {})
            if isinstance(extra, ApiError):
                metrics.count_error(extra.reason)
                results[i] = _failed(i, extra.message)
            else:
                results[i] = {"success": True, "data": (job.answer or {}) | extra, "error": None}
        return {"results": results}

    async def compare(self, req: CompareRequest) -> dict[str, Any]:
        """The same input through several versions."""
        if req.versions:
            resolved = [await self.registry.resolve(v, "versions") for v in dict.fromkeys(req.versions)]
        else:
            resolved = await self.registry.loaded_entries()
        candles = await self.candles(req, _candles(req))
        batch = [self.cached_window(req, v, e, candles) for v, e in resolved]
        decisions = await self.score(batch, served=0)  # a comparison serves no prediction and feeds no drift window
        metrics.COMPARES.inc()
        predictions = {
            p.version: {
                "signal": d.signal,
                "confidence": d.confidence,
                "stage1_prob": d.stage1_prob,
                "stage2_prob": d.stage2_prob,
                "model_version": p.version,
                "in_domain": p.in_domain,
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
        """The old engine's {prediction, confidence, factors}."""
        prepared = await self.prepare(req, candles=await self.candles(req, _candles(req)))
        (d,) = await self.score([prepared])
        factors = {
            **sig.factors(d),
            "in_domain": prepared.in_domain,
            "stage1_prob": d.stage1_prob,
            "stage2_prob": d.stage2_prob,
            "model_version": prepared.version,
        }
        return {"prediction": d.signal, "confidence": d.confidence, "factors": factors}


@dataclass
class Job:
    """A request's served window, its bar and the shadow windows scored with it."""

    served: Prepared
    bar: Bar | None = None
    shadows: list[Prepared] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    logs: bool = False  # a trusted request about a bar that may be logged


def _candles(req: _Inputs) -> Candles | None:
    """The request's candles (validated once for every version), or None when features or no candles are sent."""
    return None if req.features or not req.data else inputs.to_candles(req.data)


def _candles_many(items: Sequence[PredictRequest | InvalidItem]) -> dict[int, Candles | ApiError]:
    """The candles of every batch item that sends them, parsed together (or the error of each bad one)."""
    sends = {i: r.data for i, r in enumerate(items) if isinstance(r, PredictRequest) and not r.features and r.data}
    return dict(zip(sends, inputs.to_candles_many(list(sends.values())), strict=True))


def _bar_of(job: Job) -> tuple[str, str, datetime] | None:
    """(pair, timeframe, bar time) an experiment prediction is about, for its market outcome (None for a bar
    the log may not hold: off its grid, in the future, too old)."""
    return job.bar.key if job.bar is not None and job.bar.problem is None else None


Ready = list[tuple[int, PredictRequest, "Job"]]


def _fill_rows(ready: Ready, results: list[Any]) -> Ready:
    """Compute the deferred windows of a batch together; an item whose own window fails gets its error.

    A shadow window that fails is dropped (and counted), never its item.
    """
    deferred = [p for _, _, job in ready for p in (job.served, *job.shadows) if p.tail is not None]
    rows = inputs.candle_rows_many([(p.tail, p.spec) for p in deferred if p.tail is not None])
    failed: dict[int, ApiError] = {}
    for p, r in zip(deferred, rows, strict=True):
        p.tail = None
        if isinstance(r, ApiError):
            failed[id(p)] = r
        else:
            p.rows = r
    kept = []
    for i, req, job in ready:
        if id(job.served) in failed:
            exc = failed[id(job.served)]
            metrics.count_error(exc.reason)
            metrics.count_evaluation_drop("shadow", len(job.shadows))
            results[i] = _failed(i, exc.message)
            continue
        for p in job.shadows:
            if id(p) in failed:
                metrics.count_evaluation_drop("shadow")
        job.shadows = [p for p in job.shadows if id(p) not in failed]
        kept.append((i, req, job))
    return kept


def window(req: _Inputs, version: str, entry: VersionEntry, candles: Any = None, defer: bool = False) -> Prepared:
    """Rows for a version from `features` (when present) or from the request's candles.

    defer: only check the candles and keep the tail; `_fill_rows` computes the rows with the batch's others.
    """
    spec = entry.spec
    assert spec is not None
    in_domain = entry.in_domain(req.pair, req.timeframe)
    if req.features:
        rows = inputs.feature_rows(req.features, spec)
        return Prepared(version, entry, rows, None, req.pair, req.timeframe, in_domain)
    if candles is None:
        candles = inputs.to_candles(req.data or [])
    if defer:
        tail = inputs.candle_tail(candles, spec)
        return Prepared(version, entry, _NO_ROWS, candles.close, req.pair, req.timeframe, in_domain, tail)
    rows = inputs.candle_rows(candles, spec)
    return Prepared(version, entry, rows, candles.close, req.pair, req.timeframe, in_domain)


_NO_ROWS = np.empty((0, 0))


def prediction_data(
    pair: str, timeframe: str, version: str, d: sig.Decision, in_domain: bool | None = None
) -> dict[str, Any]:
    """The seed's prediction object; `factors.in_domain`: was the version trained on its pair and timeframe."""
    return {
        "pair": pair,
        "timeframe": timeframe,
        "signal": d.signal,
        "confidence": d.confidence,
        "stage1_prob": d.stage1_prob,
        "stage2_prob": d.stage2_prob,
        "model_version": version,
        "factors": sig.factors(d) | {"in_domain": in_domain},
        "timestamp": now_iso(),
    }


def _is_probability(value: Any) -> bool:
    """A model output the signal rules can use: a finite number in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and 0.0 <= number <= 1.0


def invalid_output(stage: int, version: str, value: Any) -> ApiError:
    """503 for a window whose stage output is not a probability (a model fault; nothing is served or counted)."""
    eid = error_id()
    logger.error("error %s: Stage %d of %s returned %r, not a probability", eid, stage, version, value)
    message = (
        f"Stage {stage} of model version {version} returned {value!r:.40} for this request's window, not a "
        "probability in [0, 1]; no prediction was served; retry later or name another version"
    )
    return StageUnavailable(with_error_id(message, eid))


def _models_of(entry: VersionEntry) -> str:
    """The version and its stage models' store tags: a window's stage outputs depend on nothing else."""
    return ",".join([entry.version, *(entry.stages[k].tag for k in sorted(entry.stages))])


def _failed(i: int, message: str) -> dict[str, Any]:
    return {"success": False, "data": None, "error": f"items[{i}]: {message}"}


def _decline_evidence(p: Prepared) -> float:
    """Log return over the window: the ret_1 column's sum, or from closes when ret_1 is absent."""
    if "ret_1" in p.spec.features:
        return sig.window_ret_1_sum(p.rows, p.spec.features)
    if p.closes is not None and len(p.closes) > p.spec.window:
        return float(np.log(p.closes[-1] / p.closes[-p.spec.window - 1]))
    raise BadCandles(f"{p.version} has no Stage 2 and no ret_1 feature: send candles (`data`) for its direction")
