"""A/B experiments in the service: the experiment routes' logic and the predict path's hook.

Every store call is blocking SQLAlchemy, so it runs in a worker thread (anyio.to_thread).
The active experiment is cached for at most `ttl` seconds per worker (like the active version):
requests without a user id never touch the database, requests with one read it at most once
per ttl. A prediction served under an experiment is committed before its response is sent;
if that fails the request fails with 503 and nothing is counted.

Behaviour decisions:
- an explicit `version` in a predict request wins over the experiment: that prediction is
  served by the requested version and is not counted (no prediction_id);
- the legacy POST /predict and POST /reversal/compare never take part in experiments;
- if the experiment was stopped between the cached lookup and the commit (another worker
  stopped it less than ttl ago), the prediction is served as computed but not counted;
- activation reaches the other workers within ttl; stop is immediate (the commit checks it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from sqlalchemy.exc import SQLAlchemyError

from aifx.api.errors import ApiError
from aifx.api.schemas import ExperimentCreate
from aifx.signal import Decision
from experiments import Assignment, Conflict, ExperimentError, ExperimentStore, assignment_for

if TYPE_CHECKING:
    from aifx.api.engine import Engine

logger = logging.getLogger("bentoml.aifx.experiments")
T = TypeVar("T")
_REASONS = {404: "not_found", 409: "conflict", 422: "validation"}


class DatabaseUnavailable(ApiError):
    status, reason = 503, "database_unavailable"


def api_error(exc: ExperimentError) -> ApiError:
    """A domain error of the experiments package as the API's error (same status and message)."""
    return ApiError(str(exc), status=exc.http_status, reason=_REASONS.get(exc.http_status, "internal"))


def unavailable(exc: SQLAlchemyError, what: str) -> DatabaseUnavailable:
    """503 for a database failure, with the driver's first line for the operator."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [type(exc).__name__])[0]
    logger.warning("experiment database unavailable (%s): %s", what, first)
    return DatabaseUnavailable(f"the experiment database is unavailable, {what}: {first[:200]}; retry later")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call in a worker thread, mapping its errors to API errors."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))
    except ExperimentError as exc:
        raise api_error(exc) from None
    except SQLAlchemyError as exc:
        raise unavailable(exc, "nothing was changed") from exc


class Experiments:
    """The experiment store as the predict path uses it: cached active experiment, assignment, recording."""

    def __init__(self, store: ExperimentStore, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._value: dict[str, Any] | None = None
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def active(self) -> dict[str, Any] | None:
        """The active experiment, read at most once per ttl; the last known one while the database is down."""
        if self._clock() - self._read_at < self.ttl:
            return self._value
        async with self._lock:
            if self._clock() - self._read_at < self.ttl:
                return self._value
            try:
                self._value = await anyio.to_thread.run_sync(self.store.active_experiment)
            except SQLAlchemyError as exc:
                unavailable(exc, "keeping the last known active experiment")
            self._read_at = self._clock()
        return self._value

    def remember(self, experiment: dict[str, Any] | None) -> None:
        """This worker changed the active experiment: use the new state at once."""
        self._value = experiment
        self._read_at = self._clock()

    async def assign(self, user_id: str | None, version: str | None) -> Assignment | None:
        """The user's variant when an experiment is active, the request names a user and no explicit version."""
        if user_id is None or version is not None:
            return None
        experiment = await self.active()
        return assignment_for(experiment, user_id) if experiment is not None else None

    async def record(self, assigned: Assignment, user_id: str, decision: Decision) -> dict[str, Any]:
        """Commit one served prediction; the response fields, or {} when the experiment has just ended."""
        out = (await self.record_many({0: (assigned, user_id, decision)}))[0]
        if isinstance(out, ApiError):
            raise out
        return out

    async def record_many(
        self, items: dict[int, tuple[Assignment, str, Decision]]
    ) -> dict[int, dict[str, Any] | ApiError]:
        """Commit several served predictions (one transaction each) in one worker thread, by item key."""
        if not items:
            return {}
        keys = list(items)
        out = await anyio.to_thread.run_sync(self._record_all, [items[k] for k in keys])
        return dict(zip(keys, out, strict=True))

    def _record_all(self, items: list[tuple[Assignment, str, Decision]]) -> list[dict[str, Any] | ApiError]:
        """Blocking: record each prediction; a failure is returned in its place."""
        out: list[dict[str, Any] | ApiError] = []
        for assigned, user_id, decision in items:
            try:
                out.append(self._record_one(assigned, user_id, decision))
            except SQLAlchemyError as exc:
                out.append(unavailable(exc, "the prediction was not recorded"))
            except ExperimentError as exc:
                out.append(api_error(exc))
        return out

    def _record_one(self, assigned: Assignment, user_id: str, decision: Decision) -> dict[str, Any]:
        """Blocking: commit one prediction; {} when the experiment is no longer active."""
        try:
            prediction_id = self.store.record_prediction(
                assigned.experiment_id,
                user_id,
                assigned.variant,
                assigned.model_version,
                decision.signal,
                decision.confidence,
                decision.stage1_prob,
                decision.stage2_prob,
            )
        except Conflict:
            self._read_at = float("-inf")  # stopped meanwhile: look again on the next request
            logger.info("experiment %s ended before the prediction was recorded", assigned.experiment_id)
            return {}
        return {"prediction_id": prediction_id, "experiment_id": assigned.experiment_id, "variant": assigned.variant}


# ---- route logic ---------------------------------------------------------------------------


async def check_variants(engine: Engine, body: ExperimentCreate) -> None:
    """422 unless both variants are configured versions whose stages are all loaded."""
    avail = await engine.availability(refresh=True)
    for field in ("variant_a", "variant_b"):
        version = getattr(body, field)
        if not engine.catalog.known(version):
            configured = ", ".join(engine.catalog.order)
            raise ApiError(f"{field}: unknown model version {version!r}; configured versions: {configured}", 422)
        if version not in avail.loaded:
            reason = avail.failed.get(version, "not loaded")
            loaded = ", ".join(avail.loaded) or "none"
            raise ApiError(f"{field}: model version {version} is not loaded ({reason}); loaded versions: {loaded}", 422)


async def create(engine: Engine, body: ExperimentCreate) -> dict[str, Any]:
    """POST /reversal/experiments: a new experiment in status 'created'."""
    await check_variants(engine, body)
    store = engine.experiments.store
    return await in_thread(
        store.create_experiment,
        body.experiment_id,
        body.name,
        body.description,
        body.variant_a,
        body.variant_b,
        body.traffic_split,
    )


async def activate(engine: Engine, experiment_id: str) -> dict[str, Any]:
    """POST /reversal/experiments/{id}/activate: at most one experiment is active."""
    experiment = await in_thread(engine.experiments.store.activate_experiment, experiment_id)
    engine.experiments.remember(experiment)
    logger.info("experiment %s activated", experiment_id)
    return experiment


async def stop(engine: Engine, experiment_id: str) -> dict[str, Any]:
    """POST /reversal/experiments/{id}/stop: only the active experiment can be stopped."""
    experiment = await in_thread(engine.experiments.store.stop_experiment, experiment_id)
    engine.experiments.remember(None)
    logger.info("experiment %s stopped", experiment_id)
    return experiment


async def listing(engine: Engine) -> dict[str, Any]:
    """GET /reversal/experiments: every experiment, oldest first, and the active one's id."""
    items = await in_thread(engine.experiments.store.list_experiments)
    active = next((e["experiment_id"] for e in items if e["active"]), None)
    return {"experiments": items, "active_experiment_id": active}


async def metrics(engine: Engine, experiment_id: str) -> dict[str, Any]:
    """GET /reversal/experiments/{id}/metrics: the seed's shape plus outcomes and the comparison."""
    return await in_thread(engine.experiments.store.metrics, experiment_id)


async def record_outcome(engine: Engine, prediction_id: str, pips: float) -> tuple[dict[str, Any], int]:
    """POST /reversal/predictions/{id}/outcome: 201 when recorded, 200 when the same pips were already there."""
    outcome = await in_thread(engine.experiments.store.record_outcome, prediction_id, pips)
    return outcome, 201 if outcome["created"] else 200
