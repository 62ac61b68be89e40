"""Health, the model versions (listing, one version, reload, switch) and trusted candles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import JSONResponse

from aifx.http.body import json_body, openapi_body
from aifx.http.deps import ADMIN, OUTCOME, AdminView, PartsDep, Version
from aifx.http.envelope import ERROR_RESPONSES, ok
from aifx.http.responses import CandlesData, Envelope, Health, ModelInfo, ModelsData, ReloadData, SwitchData
from aifx.serving.schemas import CandlesRequest
from aifx.serving.views import LiveFilters, add_candles, model_with_live, models_with_live
from aifx.serving.views import health as health_of

router = APIRouter(responses=ERROR_RESPONSES)  # the envelope for every error status


@router.get("/health", response_model=Health, tags=["health"], responses={503: {"model": Health}})
async def health(p: PartsDep, details: AdminView) -> JSONResponse:
    """Service health (flat, as in the seed); why a version failed only for the admin (or a local caller without
    tokens)."""
    body, status = await health_of(p.registry, details)
    return JSONResponse(body, status_code=status)


@router.get("/reversal/models", response_model=Envelope[ModelsData], tags=["models"])
async def list_models(p: PartsDep, live: Annotated[LiveFilters, Query()]) -> JSONResponse:
    """Active version, default, fallback order and every configured version with its metrics and `live` block."""
    return ok(await models_with_live(p, live))


@router.get("/reversal/models/{version}", response_model=Envelope[ModelInfo], tags=["models"])
async def get_model(version: Version, p: PartsDep, live: Annotated[LiveFilters, Query()]) -> JSONResponse:
    """One version: stages, threshold, features, window, label parameters, metrics, `live` block."""
    return ok(await model_with_live(p, version, live))


@router.post(
    "/reversal/candles",
    response_model=Envelope[CandlesData],
    tags=["outcomes"],
    openapi_extra=openapi_body(CandlesRequest),
    dependencies=OUTCOME,
)
async def post_candles(body: Annotated[CandlesRequest, json_body(CandlesRequest)], p: PartsDep) -> JSONResponse:
    """Closed candles from a trusted source (outcome or admin token): they resolve logged bars' outcomes."""
    return ok(await add_candles(p, body))


@router.post("/reversal/models/reload", response_model=Envelope[ReloadData], tags=["models"], dependencies=ADMIN)
async def reload_models(p: PartsDep) -> JSONResponse:
    """Admin: serve configured versions imported into the model store since the start, in every worker.

    Answers once every worker will load them on its next request (after the state TTL): which
    versions serve now, which were added, and why the others do not.
    """
    return ok(await p.registry.reload())


@router.post(
    "/reversal/models/{version}/switch",
    response_model=Envelope[SwitchData],
    tags=["models"],
    dependencies=ADMIN,
)
async def switch_model(version: Version, p: PartsDep) -> JSONResponse:
    """Admin: make a version active in every worker (persisted)."""
    return ok(await p.registry.switch(version))
