"""GET /reversal/evaluation, the admin promotion routes, the decisions log and the SRM reset."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import JSONResponse

from aifx.http.body import json_body, openapi_body
from aifx.http.comparison_responses import AnchorReset, DecisionList, PairedComparison, PolicyList, PromotionPolicy
from aifx.http.deps import ADMIN, ExperimentId, PartsDep
from aifx.http.envelope import ERROR_RESPONSES, ok
from aifx.http.responses import Envelope, SrmCheck
from aifx.serving.ab_tests import api_error, in_thread
from aifx.serving.context import get_logger
from aifx.serving.evaluation import (
    DecisionQuery,
    EvaluationQuery,
    PolicyRequest,
    evaluation,
    promoter,
    read,
    srm_reset,
)
from experiments.errors import ExperimentError
from experiments.schema import ID_LEN

logger = get_logger("bentoml.aifx.evaluation")
Challenger = Annotated[str, Path(max_length=ID_LEN, description="a configured model version, e.g. v3.2")]
router = APIRouter(responses=ERROR_RESPONSES)  # the envelope for every error status


@router.get("/reversal/evaluation", response_model=Envelope[PairedComparison], tags=["evaluation"])
async def get_evaluation(p: PartsDep, q: Annotated[EvaluationQuery, Query()]) -> JSONResponse:
    """Version b against version a on the same bars: mean R difference, Newey-West error, always-valid state."""
    return ok(await evaluation(p, q))


@router.get("/reversal/promotion", response_model=Envelope[PolicyList], tags=["evaluation"], dependencies=ADMIN)
async def list_policies(p: PartsDep) -> JSONResponse:
    """Admin: every challenger's promotion policy and probation."""
    return ok({"policies": await read(promoter(p).policies.policies)})


@router.put(
    "/reversal/promotion/{challenger}",
    response_model=Envelope[PromotionPolicy],
    tags=["evaluation"],
    dependencies=ADMIN,
    openapi_extra=openapi_body(PolicyRequest),
)
async def put_policy(
    challenger: Challenger, body: Annotated[PolicyRequest, json_body(PolicyRequest)], p: PartsDep
) -> JSONResponse:
    """Admin: set a challenger's policy (`off`, `recommend` or `auto`) against the active version."""
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


@router.delete(
    "/reversal/promotion/{challenger}",
    response_model=Envelope[PolicyList],
    tags=["evaluation"],
    dependencies=ADMIN,
)
async def delete_policy(challenger: Challenger, p: PartsDep) -> JSONResponse:
    """Admin: remove a challenger's policy (404 when it has none); the remaining policies."""
    store = promoter(p).policies
    await in_thread(store.delete_policy, challenger)
    return ok({"policies": await read(store.policies)})


@router.post(
    "/reversal/promotion/{challenger}/reset",
    response_model=Envelope[AnchorReset],
    tags=["evaluation"],
    dependencies=ADMIN,
)
async def reset_anchor(challenger: Challenger, p: PartsDep) -> JSONResponse:
    """Admin: start the challenger's anchored comparison anew (its standing decision is dropped)."""
    pro = promoter(p)
    try:
        out = await pro.reset(challenger)
    except ExperimentError as exc:
        raise api_error(exc) from None
    logger.warning("anchored comparison of %s against %s reset by an admin", challenger, out["a"])
    return ok(out)


@router.post(
    "/reversal/experiments/{experiment_id}/srm/reset",
    response_model=Envelope[SrmCheck],
    tags=["experiments"],
    dependencies=ADMIN,
)
async def reset_srm(experiment_id: ExperimentId, p: PartsDep) -> JSONResponse:
    """Admin: drop the experiment's standing sample-ratio-mismatch flag (once the cause is fixed) and restart
    the test on the users counted from now on; the answer is the check as it stands after the reset."""
    out = await in_thread(srm_reset, p, experiment_id)
    logger.warning("experiment %s: SRM check reset by an admin (baseline %s)", experiment_id, out["baseline"])
    return ok(out)


@router.get("/reversal/decisions", response_model=Envelope[DecisionList], tags=["evaluation"], dependencies=ADMIN)
async def list_decisions(p: PartsDep, q: Annotated[DecisionQuery, Query()]) -> JSONResponse:
    """Admin: every recommendation, switch, rollback and confirmation, newest first, with the figures."""
    since = q.since.replace(tzinfo=q.since.tzinfo or UTC) if q.since else None
    store = promoter(p).policies
    return ok({"decisions": await read(lambda: store.decisions(limit=q.limit, since=since))})
