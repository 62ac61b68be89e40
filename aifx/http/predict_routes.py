"""The prediction routes: predict, batch, compare and the old engine's /predict."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from starlette.responses import JSONResponse

from aifx.http.body import json_body, openapi_body
from aifx.http.deps import JSON_ONLY, PartsDep, Trusted
from aifx.http.envelope import ERROR_RESPONSES, ok
from aifx.http.responses import BatchData, CompareData, Envelope, LegacyData, PredictionData
from aifx.serving.schemas import BatchRequest, CompareRequest, LegacyPredictRequest, PredictRequest

router = APIRouter(responses=ERROR_RESPONSES)  # the envelope for every error status


@router.post(
    "/reversal/predict",
    response_model=Envelope[PredictionData],
    tags=["reversal"],
    openapi_extra=openapi_body(PredictRequest),
    dependencies=JSON_ONLY,
)
async def predict(
    body: Annotated[PredictRequest, json_body(PredictRequest)], p: PartsDep, trusted: Trusted
) -> JSONResponse:
    """Predict a reversal signal from the latest candles (or precomputed features).

    A long or short from candles carries `trade` (the levels its outcome is scored by). With the
    outcome (or admin) token the request's candles also resolve earlier bars (README "Outcomes").
    """
    return ok(await p.predictor.predict(body, trusted))


@router.post(
    "/reversal/predict/batch",
    response_model=Envelope[BatchData],
    tags=["reversal"],
    openapi_extra=openapi_body(BatchRequest),
    dependencies=JSON_ONLY,
)
async def predict_batch(
    body: Annotated[BatchRequest, json_body(BatchRequest)], p: PartsDep, trusted: Trusted
) -> JSONResponse:
    """Many predict requests in one call; each item succeeds or fails on its own."""
    return ok(await p.predictor.predict_many(body.items, trusted))


@router.post(
    "/reversal/compare",
    response_model=Envelope[CompareData],
    tags=["reversal"],
    openapi_extra=openapi_body(CompareRequest),
    dependencies=JSON_ONLY,
)
async def compare(body: Annotated[CompareRequest, json_body(CompareRequest)], p: PartsDep) -> JSONResponse:
    """The same input through several versions, with consensus and disagreement."""
    return ok(await p.predictor.compare(body))


legacy = APIRouter(responses=ERROR_RESPONSES)  # added last, as the seed listed it


@legacy.post(
    "/predict",
    response_model=Envelope[LegacyData],
    tags=["legacy"],
    openapi_extra=openapi_body(LegacyPredictRequest),
    dependencies=JSON_ONLY,
)
async def predict_legacy(
    body: Annotated[LegacyPredictRequest, json_body(LegacyPredictRequest)], p: PartsDep
) -> JSONResponse:
    """Legacy route of the old engine: {prediction, confidence, factors}."""
    return ok(await p.predictor.predict_legacy(body))
