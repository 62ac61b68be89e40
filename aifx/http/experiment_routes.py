"""SPEC 6: experiment lifecycle (admin), listing, metrics and prediction outcomes (outcome token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from starlette.responses import JSONResponse

from aifx.http.body import json_body, openapi_body
from aifx.http.deps import ADMIN, OUTCOME, AdminToken, ExperimentId, PartsDep, PredictionId
from aifx.http.envelope import ERROR_RESPONSES, ok
from aifx.http.responses import Envelope, ExperimentData, ExperimentList, ExperimentMetricsData, OutcomeData
from aifx.serving import ab_tests as ab
from aifx.serving.evaluation import experiment_metrics as metrics_with_paired
from aifx.serving.schemas import ExperimentCreate, OutcomeRequest

router = APIRouter(responses=ERROR_RESPONSES)  # the envelope for every error status


def _without_salt(experiment: dict[str, Any]) -> dict[str, Any]:
    """An experiment as non-admin callers see it: the salt would let anyone compute assignments offline."""
    return {k: v for k, v in experiment.items() if k != "salt"}


@router.post(
    "/reversal/experiments",
    status_code=201,
    response_model=Envelope[ExperimentData],
    tags=["experiments"],
    dependencies=ADMIN,
    openapi_extra=openapi_body(ExperimentCreate),
)
async def create_experiment(
    body: Annotated[ExperimentCreate, json_body(ExperimentCreate)], p: PartsDep
) -> JSONResponse:
    """Admin: create an A/B experiment between two loaded versions (traffic_split = share sent to B)."""
    return ok(await ab.create(p.registry, p.ab, body), status=201)


@router.post(
    "/reversal/experiments/{experiment_id}/activate",
    response_model=Envelope[ExperimentData],
    tags=["experiments"],
    dependencies=ADMIN,
)
async def activate_experiment(experiment_id: ExperimentId, p: PartsDep) -> JSONResponse:
    """Admin: activate an experiment (409 while another one is active)."""
    return ok(await ab.activate(p.ab, experiment_id))


@router.post(
    "/reversal/experiments/{experiment_id}/stop",
    response_model=Envelope[ExperimentData],
    tags=["experiments"],
    dependencies=ADMIN,
)
async def stop_experiment(experiment_id: ExperimentId, p: PartsDep) -> JSONResponse:
    """Admin: stop the active experiment (409 when it is not active); its data stays readable."""
    return ok(await ab.stop(p.ab, experiment_id))


@router.get("/reversal/experiments", response_model=Envelope[ExperimentList], tags=["experiments"])
async def list_experiments(p: PartsDep, admin: AdminToken) -> JSONResponse:
    """Every experiment, oldest first, and the active one's id (`salt` only for the admin token)."""
    data = await ab.listing(p.ab)
    if not admin:
        data = {**data, "experiments": [_without_salt(e) for e in data["experiments"]]}
    return ok(data)


@router.get(
    "/reversal/experiments/{experiment_id}/metrics",
    response_model=Envelope[ExperimentMetricsData],
    tags=["experiments"],
)
async def experiment_metrics(experiment_id: ExperimentId, p: PartsDep) -> JSONResponse:
    """Per-variant count, signals, avg_confidence and outcomes, the B-vs-A tests and winner (fixed horizon),
    the sample-ratio-mismatch check and, with the outcome loop, the paired always-valid view."""
    return ok(_without_salt(await metrics_with_paired(p, experiment_id)))


@router.post(
    "/reversal/predictions/{prediction_id}/outcome",
    response_model=Envelope[OutcomeData],
    tags=["experiments"],
    responses={201: {"model": Envelope[OutcomeData], "description": "Outcome recorded"}},
    dependencies=OUTCOME,
    openapi_extra=openapi_body(OutcomeRequest),
)
async def record_outcome(
    prediction_id: PredictionId, body: Annotated[OutcomeRequest, json_body(OutcomeRequest)], p: PartsDep
) -> JSONResponse:
    """The realized pips of a prediction served under an experiment (201 new, 200 same again, 409 different).

    Needs `Authorization: Bearer <AIFX_OUTCOME_TOKEN>` (or the admin token) when either token is set.
    """
    data, status = await ab.record_outcome(p.ab, prediction_id, body.pips)
    return ok(data, status=status)
