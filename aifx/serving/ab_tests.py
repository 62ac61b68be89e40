"""A/B tests in the service: the experiment routes' logic and the predict path's hook.

Every store call is blocking SQLAlchemy, so it runs in a worker thread (anyio.to_thread).
The active experiment is shared state (aifx.cache.SharedState, like the active version):
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

import functools
import hashlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import anyio
from sqlalchemy.exc import DataError, SQLAlchemyError

from aifx import metrics as aifx_metrics
from aifx.cache import SharedState
from aifx.serving import context
from aifx.serving.context import get_logger
from aifx.serving.errors import ApiError, error_id, with_error_id
from aifx.serving.registry import VersionRegistry
from aifx.serving.schemas import ExperimentCreate
from aifx.signal import Decision
from experiments import Assignment, ExperimentError, ExperimentStore, Served, assignment_for
from experiments.schema import IDEMPOTENCY_KEY_LEN

logger = get_logger("bentoml.aifx.ab_tests")
T = TypeVar("T")
BarKey = tuple[str, str, datetime]  # (pair, timeframe, bar time) of a prediction's bar
_REASONS = {404: "not_found", 409: "conflict", 422: "validation"}


class DatabaseUnavailable(ApiError):
    status, reason = 503, "database_unavailable"


def api_error(exc: ExperimentError) -> ApiError:
    """A domain error of the experiments package as the API's error (same status and message)."""
    return ApiError(str(exc), status=exc.http_status, reason=_REASONS.get(exc.http_status, "internal"))


def unavailable(exc: SQLAlchemyError, what: str) -> DatabaseUnavailable:
    """503 for a database failure: the client gets what failed and an error id, the log the driver's first line.

    The driver's line names host, port, database and user, so it never reaches the client.
    """
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [type(exc).__name__])[0]
    eid = error_id()
    logger.warning("error %s: experiment database unavailable (%s): %s", eid, what, first)
    return DatabaseUnavailable(with_error_id(f"the experiment database is unavailable, {what}; retry later", eid))


def rejected(exc: DataError, what: str) -> ApiError:
    """422 for a value the database refuses as data (e.g. NUL in text on PostgreSQL): the request, not the database."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [type(exc).__name__])[0]
    eid = error_id()
    logger.warning("error %s: the experiment database rejected a value (%s): %s", eid, what, first)
    message = f"the experiment database rejected a value of this request as invalid data, {what}; check its text fields"
    return ApiError(with_error_id(message, eid), status=422, reason="validation")


def database_unavailable(exc: BaseException, what: str) -> ApiError:
    """503 for any database failure (SQLAlchemy's, or the outcome log resting after one)."""
    if isinstance(exc, SQLAlchemyError):
        return unavailable(exc, what)
    eid = error_id()
    logger.warning("error %s: database unavailable (%s): %s", eid, what, type(exc).__name__)
    return DatabaseUnavailable(with_error_id(f"the database is unavailable, {what}; retry later", eid))


def item_key(base: str | None, index: int) -> str | None:
    """Batch item index's Idempotency-Key: `<key>:<i>`, or `h<sha256 of key>:<i>` when that would not fit."""
    if base is None:
        return None
    key = f"{base}:{index}"
    if len(key) <= IDEMPOTENCY_KEY_LEN:
        return key
    return f"h{hashlib.sha256(base.encode()).hexdigest()[:96]}:{index}"


def _served(assigned: Assignment, user_id: str, decision: Decision, bar: BarKey | None, key: str | None) -> Served:
    return Served(
        assigned.experiment_id,
        user_id,
        assigned.variant,
        assigned.model_version,
        decision.signal,
        decision.confidence,
        decision.stage1_prob,
        decision.stage2_prob,
        idempotency_key=key,
        bar=bar,
    )


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call in a worker thread, mapping its errors to API errors."""
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args))
    except ExperimentError as exc:
        raise api_error(exc) from None
    except DataError as exc:
        raise rejected(exc, "nothing was changed") from exc
    except SQLAlchemyError as exc:
        raise unavailable(exc, "nothing was changed") from exc


class ABTests:
    """The experiment store as the predict path uses it: the shared active experiment, assignment, recording."""

    def __init__(self, store: ExperimentStore, active: SharedState[dict[str, Any]]) -> None:
        self.store = store
        self.active = active

    async def assign(self, user_id: str | None, version: str | None) -> Assignment | None:
        """The user's variant when an experiment is active, the request names a user and no explicit version."""
        if user_id is None or version is not None:
            return None
        experiment = await self.active.get()
        return assignment_for(experiment, user_id) if experiment is not None else None

    async def record(
        self, assigned: Assignment, user_id: str, decision: Decision, bar: BarKey | None = None
    ) -> dict[str, Any]:
        """Commit one served prediction; the response fields, or {} when the experiment has just ended."""
        out = (await self.record_many({0: (assigned, user_id, decision, bar)}, batch=False))[0]
        if isinstance(out, ApiError):
            raise out
        return out

    async def record_many(
        self, items: dict[int, tuple[Assignment, str, Decision, BarKey | None]], batch: bool = True
    ) -> dict[int, dict[str, Any] | ApiError]:
        """Commit several served predictions in one transaction (one worker thread), by item key.

        The request's Idempotency-Key (item i of a batch: `<key>:<i>`, or a digest of the key when that
        would be too long) makes a client retry find the first recording instead of counting again.
        When the request is cancelled (its timeout), the transaction rolls back: nothing more is recorded.
        """
        if not items:
            return {}
        keys = list(items)
        base = context.idempotency_key()
        served = [_served(*items[k], item_key(base, k) if batch else base) for k in keys]
        abandoned = threading.Event()
        try:
            results = await anyio.to_thread.run_sync(
                self.store.record_predictions, served, abandoned, abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            abandoned.set()  # the thread sees it before its next row and before committing
            raise
        except SQLAlchemyError as exc:
            error = unavailable(exc, "the prediction was not recorded")
            return dict.fromkeys(keys, error)
        out: dict[int, dict[str, Any] | ApiError] = {}
        for k, item, result in zip(keys, served, results, strict=True):
            out[k] = self._answer(item, result)
        return out

    def _answer(self, item: Served, result: Any) -> dict[str, Any] | ApiError:
        if isinstance(result, str):
            aifx_metrics.EXPERIMENT_PREDICTIONS.labels(variant=item.variant).inc()  # Variant: "A" or "B"
            return {"prediction_id": result, "experiment_id": item.experiment_id, "variant": item.variant}
        if result is None:
            self.active.expire()  # stopped meanwhile: look again on the next request
            logger.info("experiment %s ended before the prediction was recorded", item.experiment_id)
            return {}
        if isinstance(result, DataError):
            return rejected(result, "the prediction was not recorded")
        return api_error(result)


# ---- route logic ---------------------------------------------------------------------------


async def check_variants(registry: VersionRegistry, body: ExperimentCreate) -> None:
    """Both variants must be configured (else 422) and serving (else 503): the registry's errors."""
    avail = await registry.availability(refresh=True)
    for field in ("variant_a", "variant_b"):
        registry.check_known(getattr(body, field), field)
    for field in ("variant_a", "variant_b"):
        await registry.require_loaded(getattr(body, field), field, avail)


async def create(registry: VersionRegistry, ab: ABTests, body: ExperimentCreate) -> dict[str, Any]:
    """POST /reversal/experiments: a new experiment in status 'created'."""
    await check_variants(registry, body)
    return await in_thread(
        ab.store.create_experiment,
        body.experiment_id,
        body.name,
        body.description,
        body.variant_a,
        body.variant_b,
        body.traffic_split,
    )


async def activate(ab: ABTests, experiment_id: str) -> dict[str, Any]:
    """POST /reversal/experiments/{id}/activate: at most one experiment is active."""
    experiment = await in_thread(ab.store.activate_experiment, experiment_id)
    ab.active.put(experiment)
    logger.info("experiment %s activated", experiment_id)
    return experiment


async def stop(ab: ABTests, experiment_id: str) -> dict[str, Any]:
    """POST /reversal/experiments/{id}/stop: only the active experiment can be stopped."""
    experiment = await in_thread(ab.store.stop_experiment, experiment_id)
    ab.active.put(None)
    logger.info("experiment %s stopped", experiment_id)
    return experiment


async def listing(ab: ABTests) -> dict[str, Any]:
    """GET /reversal/experiments: every experiment, oldest first, and the active one's id."""
    items = await in_thread(ab.store.list_experiments)
    active = next((e["experiment_id"] for e in items if e["active"]), None)
    return {"experiments": items, "active_experiment_id": active}


async def metrics(ab: ABTests, experiment_id: str) -> dict[str, Any]:
    """GET /reversal/experiments/{id}/metrics: the seed's shape plus outcomes and the comparison."""
    return await in_thread(ab.store.metrics, experiment_id)


async def record_outcome(ab: ABTests, prediction_id: str, pips: float) -> tuple[dict[str, Any], int]:
    """POST /reversal/predictions/{id}/outcome: 201 when recorded, 200 when the same pips were already there."""
    outcome = await in_thread(ab.store.record_outcome, prediction_id, pips)
    return outcome, 201 if outcome["created"] else 200
