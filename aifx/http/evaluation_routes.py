"""Deciding between versions (issue 13): paired comparisons, promotion policies (admin) and their audit trail."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import JSONResponse

from aifx import instruments, metrics, srm
from aifx.http.body import json_body, openapi_body
from aifx.http.comparison_responses import AnchorReset, DecisionList, PairedComparison, PolicyList, PromotionPolicy
from aifx.http.envelope import ok
from aifx.http.responses import Envelope, SrmCheck
from aifx.outcomes import BASELINES
from aifx.serving import ab_tests as ab
from aifx.serving.ab_tests import api_error, in_thread
from aifx.serving.context import get_logger
from aifx.serving.errors import ApiError
from aifx.serving.outcome_log import DatabaseResting
from aifx.serving.parts import Parts
from aifx.serving.promoter import Promoter
from aifx.serving.schemas import TIMEFRAME_PATTERN, QueryTime
from aifx.trade import UnknownPair, normalise_pair, pip_size
from experiments import SrmStore
from experiments.errors import ExperimentError
from experiments.schema import ID_LEN

logger = get_logger("bentoml.aifx.evaluation")
Challenger = Annotated[str, Path(max_length=ID_LEN, description="a configured model version, e.g. v3.2")]
ExperimentId = Annotated[str, Path(max_length=ID_LEN, description=f"1-{ID_LEN} characters of A-Z a-z 0-9 _ . -")]


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
    out = await _read(pro.compare, q.a, q.b, pair, timeframe, since)
    # The anchored sequence the promoter decides on covers every series from its start: it answers only
    # for the unfiltered comparison; the windowed figures beside it are for reading, not deciding.
    unfiltered = pair is None and timeframe is None and since is None
    out["anchored"] = await _read(pro.anchoring.view, q.a, q.b) if unfiltered else None
    return out


async def _read(fn: Callable[..., Any], *args: Any) -> Any:
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


def add_evaluation_routes(app: FastAPI, admin: list[Any], parts: Callable[[Request], Parts]) -> None:
    """Register the comparison route and the admin promotion routes on app."""

    @app.get("/reversal/evaluation", response_model=Envelope[PairedComparison], tags=["evaluation"])
    async def get_evaluation(request: Request, q: Annotated[EvaluationQuery, Query()]) -> JSONResponse:
        """Version b against version a on the same bars: mean R difference, Newey-West error, always-valid state."""
        return ok(await evaluation(parts(request), q))

    @app.get("/reversal/promotion", response_model=Envelope[PolicyList], tags=["evaluation"], dependencies=admin)
    async def list_policies(request: Request) -> JSONResponse:
        """Admin: every challenger's promotion policy and probation."""
        return ok({"policies": await _read(promoter(parts(request)).policies.policies)})

    @app.put(
        "/reversal/promotion/{challenger}",
        response_model=Envelope[PromotionPolicy],
        tags=["evaluation"],
        dependencies=admin,
        openapi_extra=openapi_body(PolicyRequest),
    )
    async def put_policy(
        challenger: Challenger, body: Annotated[PolicyRequest, json_body(PolicyRequest)], request: Request
    ) -> JSONResponse:
        """Admin: set a challenger's policy (`off`, `recommend` or `auto`) against the active version."""
        p = parts(request)
        p.registry.check_known(challenger)
        pro = promoter(p)
        unset = pro.default_limits()  # the current settings, read when the policy is set
        values = (
            body.mode,
            unset.min_effect if body.min_effect_r is None else body.min_effect_r,
            unset.max_drawdown_r if body.max_drawdown_r is None else body.max_drawdown_r,
            body.probation_bars,
        )
        policy = await in_thread(pro.policies.set_policy, challenger, *values)
        logger.info("promotion policy of %s set: mode %s", challenger, body.mode)
        return ok(policy)

    @app.delete(
        "/reversal/promotion/{challenger}",
        response_model=Envelope[PolicyList],
        tags=["evaluation"],
        dependencies=admin,
    )
    async def delete_policy(challenger: Challenger, request: Request) -> JSONResponse:
        """Admin: remove a challenger's policy (404 when it has none); the remaining policies."""
        store = promoter(parts(request)).policies
        await in_thread(store.delete_policy, challenger)
        return ok({"policies": await _read(store.policies)})

    @app.post(
        "/reversal/promotion/{challenger}/reset",
        response_model=Envelope[AnchorReset],
        tags=["evaluation"],
        dependencies=admin,
    )
    async def reset_anchor(challenger: Challenger, request: Request) -> JSONResponse:
        """Admin: start the challenger's anchored comparison anew (its standing decision is dropped)."""
        pro = promoter(parts(request))
        try:
            out = await pro.reset(challenger)
        except ExperimentError as exc:
            raise api_error(exc) from None
        logger.warning("anchored comparison of %s against %s reset by an admin", challenger, out["a"])
        return ok(out)

    @app.post(
        "/reversal/experiments/{experiment_id}/srm/reset",
        response_model=Envelope[SrmCheck],
        tags=["experiments"],
        dependencies=admin,
    )
    async def reset_srm(experiment_id: ExperimentId, request: Request) -> JSONResponse:
        """Admin: drop the experiment's standing sample-ratio-mismatch flag (once the cause is fixed) and restart
        the test on the users counted from now on; the answer is the check as it stands after the reset."""
        out = await in_thread(srm_reset, parts(request), experiment_id)
        logger.warning("experiment %s: SRM check reset by an admin (baseline %s)", experiment_id, out["baseline"])
        return ok(out)

    @app.get("/reversal/decisions", response_model=Envelope[DecisionList], tags=["evaluation"], dependencies=admin)
    async def list_decisions(request: Request, q: Annotated[DecisionQuery, Query()]) -> JSONResponse:
        """Admin: every recommendation, switch, rollback and confirmation, newest first, with the figures."""
        since = q.since.replace(tzinfo=q.since.tzinfo or UTC) if q.since else None
        store = promoter(parts(request)).policies
        return ok({"decisions": await _read(lambda: store.decisions(limit=q.limit, since=since))})


def publish_srm(p: Parts) -> None:
    """Set the SRM and experiment-active gauges from the active experiment (blocking: the promoter's thread)."""
    active = p.ab.store.active_experiment()
    metrics.EXPERIMENT_ACTIVE.set(0.0 if active is None else 1.0)
    if active is None:
        metrics.SRM_P_VALUE.set(1.0)
        return
    _, check = srm_status(p, active["experiment_id"])  # a standing flag keeps the p-value at or below its alpha
    metrics.SRM_P_VALUE.set(check["p_value"] if check["p_value"] is not None else 1.0)
