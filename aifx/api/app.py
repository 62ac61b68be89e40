"""The REST API: the seed's routes and envelope, as a FastAPI app the entry service mounts."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from aifx import metrics
from aifx.api.asgi import BodySizeLimit
from aifx.api.engine import Engine
from aifx.api.errors import ApiError, Unauthorized, fail, format_errors, ok
from aifx.api.schemas import (
    BatchData,
    BatchRequest,
    CompareData,
    CompareRequest,
    Envelope,
    Health,
    LegacyData,
    LegacyPredictRequest,
    PredictionData,
    PredictRequest,
)
from aifx.settings import Settings

logger = logging.getLogger("bentoml.aifx.api")
_EXAMPLE = (
    '{"pair": "EUR/USD", "timeframe": "1h", "data": [{"timestamp": "2017-01-02T00:00:00Z", '
    '"open": 1.05, "high": 1.06, "low": 1.04, "close": 1.055}, ...]}'
)


def engine_of(request: Request) -> Engine:
    """The engine the entry service attached at start-up."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise ApiError("the service is starting; retry in a moment", status=503, reason="stage_unavailable")
    return engine


def check_admin(settings: Settings, authorization: str | None) -> None:
    """Admin routes need `Authorization: Bearer <AIFX_ADMIN_TOKEN>` when a token is set."""
    token = settings.admin_token
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("admin route: send the header `Authorization: Bearer <AIFX_ADMIN_TOKEN>`")


def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app with the seed's routes; the engine is attached later as app.state.engine."""
    app = FastAPI(
        title="AIFX Reversal Engine",
        description="Two-stage forex reversal model (seed-compatible routes and envelope).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    _add_error_handlers(app)

    @app.get("/health", response_model=Health, tags=["health"])
    async def health(request: Request) -> JSONResponse:
        """Service health (flat, as in the seed)."""
        body, status = await engine_of(request).health()
        return JSONResponse(body, status_code=status)

    @app.post("/reversal/predict", response_model=Envelope[PredictionData], tags=["reversal"])
    async def predict(body: PredictRequest, request: Request) -> JSONResponse:
        """Predict a reversal signal from the latest candles (or precomputed features)."""
        return ok(await engine_of(request).predict(body))

    @app.post("/reversal/predict/batch", response_model=Envelope[BatchData], tags=["reversal"])
    async def predict_batch(body: BatchRequest, request: Request) -> JSONResponse:
        """Many predict requests in one call; each item succeeds or fails on its own."""
        return ok(await engine_of(request).predict_many(body.items))

    @app.post("/reversal/compare", response_model=Envelope[CompareData], tags=["reversal"])
    async def compare(body: CompareRequest, request: Request) -> JSONResponse:
        """The same input through several versions, with consensus and disagreement."""
        return ok(await engine_of(request).compare(body))

    @app.get("/reversal/models", response_model=Envelope[dict[str, Any]], tags=["models"])
    async def list_models(request: Request) -> JSONResponse:
        """Active version, default, fallback order and every configured version with its metrics."""
        return ok(await engine_of(request).models())

    @app.get("/reversal/models/{version}", response_model=Envelope[dict[str, Any]], tags=["models"])
    async def get_model(version: str, request: Request) -> JSONResponse:
        """One version: stages, threshold, features, window, label parameters, metrics."""
        return ok(await engine_of(request).model(version))

    @app.post("/reversal/models/{version}/switch", response_model=Envelope[dict[str, Any]], tags=["models"])
    async def switch_model(
        version: str, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        """Admin: make a version active in every worker (persisted)."""
        check_admin(settings, authorization)
        return ok(await engine_of(request).switch(version))

    @app.post("/predict", response_model=Envelope[LegacyData], tags=["legacy"])
    async def predict_legacy(body: LegacyPredictRequest, request: Request) -> JSONResponse:
        """Legacy route of the old engine: {prediction, confidence, factors}."""
        return ok(await engine_of(request).predict_legacy(body))

    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        metrics.count_error(exc.reason)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return fail(exc.message, exc.status, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.count_error("validation")
        return fail(*_validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        metrics.count_error("not_found" if exc.status_code in (404, 405) else "validation")
        return fail(str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        metrics.count_error("internal")
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return fail("internal error; see the server log", 500)


def _validation_message(exc: RequestValidationError) -> tuple[str, int]:
    """A readable message and status for FastAPI's 422 (bad JSON and empty bodies are 400)."""
    errors = list(exc.errors())
    kinds = {e.get("type") for e in errors}
    if "json_invalid" in kinds:
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON ({reason}); send a JSON object like {_EXAMPLE}", 400
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return f"request body is empty; send a JSON object like {_EXAMPLE}", 400
    if any(e.get("type") == "model_attributes_type" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return f"request body must be a JSON object (Content-Type: application/json) like {_EXAMPLE}", 400
    return format_errors(errors), 422
