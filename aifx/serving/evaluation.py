"""Paired comparisons, promotion policies and the SRM check as the routes and the promoter read them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from aifx import instruments, metrics, srm
from aifx.outcomes import BASELINES
from aifx.serving import ab_tests as ab
from aifx.serving.ab_tests import in_thread
from aifx.serving.context import get_logger
from aifx.serving.errors import ApiError
from aifx.serving.outcome_log import DatabaseResting
from aifx.serving.parts import Parts
from aifx.serving.promoter import Promoter
from aifx.serving.schemas import TIMEFRAME_PATTERN, QueryTime
from aifx.trade import UnknownPair, normalise_pair, pip_size
from experiments import SrmStore
from experiments.schema import ID_LEN

logger = get_logger("bentoml.aifx.evaluation")


class EvaluationQuery(BaseModel):
    """Which two versions to compare, on which bars."""

    model_config = ConfigDict(extra="forbid")

    a: str = Field(max_length=ID_LEN, description="the reference version, e.g. the active one")
    b: str = Field(max_length=ID_LEN, description="the challenger")
    pair: str | None = Field(default=None, max_length=32)
    timeframe: str | None = Field(default=None, pattern=TIMEFRAME_PATTERN)
    since: QueryTime | None = Field(default=None, description="ISO-8601; bars at or after it (default: retention)")


class PolicyRequest(BaseModel):
    """A challenger's promotion policy against the active version."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "recommend", "auto"]
    min_effect_r: float | None = Field(
        default=None, gt=0, le=10, description="smallest R per bar to act on (default: AIFX_COMPARISON_MIN_EFFECT_R)"
    )
    max_drawdown_r: float | None = Field(
        default=None, gt=0, le=10_000, description="guardrail: drawdown in R (default: AIFX_GUARDRAIL_MAX_DRAWDOWN_R)"
    )
    probation_bars: int = Field(default=500, ge=0, le=1_000_000, description="resolved bars watched after a switch")


class DecisionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=100, ge=1, le=1000)
    since: QueryTime | None = Field(default=None, description="ISO-8601; decisions at or after it")


def promoter(p: Parts) -> Promoter:
    """The parts' promoter, or 409 when the outcome loop (its evaluation log) is off."""
    if p.promoter is None:
        raise ApiError("the outcome loop is off (AIFX_OUTCOMES=false): versions are not scored on the same bars",
                       status=409, reason="conflict")  # fmt: skip
    return p.promoter


async def evaluation(p: Parts, q: EvaluationQuery) -> dict[str, Any]:
    """GET /reversal/evaluation: b against a on the bars both were scored on, with its state."""
    pro = promoter(p)
    for version, field in ((q.a, "a"), (q.b, "b")):
        if version not in BASELINES:  # baseline:long, baseline:short, baseline:hold are on every logged bar
            p.registry.check_known(version, field)
    if q.a == q.b:
        raise ApiError("a and b must be two different versions", status=422)
    try:
        pair = normalise_pair(q.pair) if q.pair else None
        if pair is not None:
            pip_size(pair, p.registry.settings.pip_sizes)  # a pair the service cannot score has no bars
    except UnknownPair as exc:
        raise ApiError(f"pair: {exc}", status=422) from None
    since = q.since.replace(tzinfo=q.since.tzinfo or UTC) if q.since else None
    timeframe = (instruments.canonical_timeframe(q.timeframe) or q.timeframe) if q.timeframe else None
    out = await read(pro.compare, q.a, q.b, pair, timeframe, since)
    # The anchored sequence the promoter decides on covers every series from its start: it answers only
    # for the unfiltered comparison; the windowed figures beside it are for reading, not deciding.
    unfiltered = pair is None and timeframe is None and since is None
    out["anchored"] = await read(pro.anchoring.view, q.a, q.b) if unfiltered else None
    return out


async def read(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking read in a thread; a database that does not answer is a 503 that says so."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (SQLAlchemyError, DatabaseResting) as exc:
        logger.warning("evaluation read failed: %s", type(exc).__name__)
        raise ApiError("the evaluation database is unavailable; retry later", status=503,
                       reason="database_unavailable") from None  # fmt: skip


async def experiment_metrics(p: Parts, experiment_id: str) -> dict[str, Any]:
    """The experiment's metrics with the sample-ratio-mismatch check and, with the outcome loop, the paired view."""
    data = await ab.metrics(p.ab, experiment_id)
    exp, data["srm"] = await in_thread(srm_status, p, experiment_id)
    if p.promoter is not None:
        try:
            data["paired"] = await asyncio.to_thread(p.promoter.compare, exp["variant_a"], exp["variant_b"])
        except (SQLAlchemyError, DatabaseResting) as exc:  # the split view answers without it
            logger.warning("paired view unavailable: %s", type(exc).__name__)
    return data


def srm_status(p: Parts, experiment_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An experiment and its sample-ratio-mismatch check as it stands (blocking): the anytime-valid test on the
    users counted beyond the last admin reset, and its first flag, written once (experiments.SrmStore) and
    standing across later reads and restarts until a reset. A flag that cannot be written is still reported."""
    exp, users = p.ab.store.variant_users(experiment_id)
    flags = SrmStore(p.ab.store)
    record = flags.get(experiment_id)
    counted = srm.since_reset(users, record["baseline"] if record else None)
    check = srm.srm_check(counted, {"A": 1.0 - exp["traffic_split"], "B": exp["traffic_split"]})
    if check["flagged"] and (record is None or record["flagged_at"] is None):
        try:
            record = flags.flag(experiment_id, srm.flag_record(check, users, counted))
            logger.warning("experiment %s: sample ratio mismatch flagged (users %s, e-value %s); it stands until "
                           "POST /reversal/experiments/%s/srm/reset", experiment_id, users, check["e_value"],
                           experiment_id)  # fmt: skip
        except SQLAlchemyError as exc:
            logger.warning("experiment %s: SRM flag not stored (%s); next read retries", experiment_id,
                           type(exc).__name__)  # fmt: skip
    return exp, {"users": users, **srm.standing(check, record)}


def srm_reset(p: Parts, experiment_id: str) -> dict[str, Any]:
    """Admin: drop the experiment's standing SRM flag and restart the test beyond the users counted now."""
    _, users = p.ab.store.variant_users(experiment_id)
    SrmStore(p.ab.store).reset(experiment_id, users)
    return srm_status(p, experiment_id)[1]


def publish_srm(p: Parts) -> None:
    """Set the SRM and experiment-active gauges from the active experiment (blocking: the promoter's thread)."""
    active = p.ab.store.active_experiment()
    metrics.EXPERIMENT_ACTIVE.set(0.0 if active is None else 1.0)
    if active is None:
        metrics.SRM_P_VALUE.set(1.0)
        return
    _, check = srm_status(p, active["experiment_id"])  # a standing flag keeps the p-value at or below its alpha
    metrics.SRM_P_VALUE.set(check["p_value"] if check["p_value"] is not None else 1.0)
