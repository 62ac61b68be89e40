"""The REST API: the seed's routes (the routers of aifx/http/*_routes.py) and envelope, as a FastAPI app the
service mounts; middleware and error handlers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from aifx import metrics
from aifx.http import data_routes, evaluation_routes, experiment_routes, model_routes, predict_routes, signal_routes
from aifx.http.asgi import BodyLimits, BodySizeLimit, ByteBudget
from aifx.http.envelope import ERROR_RESPONSES, fail, validation_message
from aifx.http.ratelimit import RateLimit, TokenBuckets, buckets_of
from aifx.serving.ab_tests import database_unavailable
from aifx.serving.context import RequestId, get_logger
from aifx.serving.errors import ApiError, error_id, with_error_id
from aifx.serving.outcome_log import DatabaseResting
from aifx.settings import Settings

logger = get_logger("bentoml.aifx.api")


def create_app(settings: Settings, buckets: TokenBuckets | None = None, budget: ByteBudget | None = None) -> FastAPI:
    """The FastAPI app with the seed's routes and its guards; its parts are attached later as app.state.parts."""
    return assemble(rest_app(), settings, buckets, budget)


def rest_app() -> FastAPI:
    """The app without settings: routes and error handlers, all the OpenAPI document needs (`bentoml build`
    imports the service without runtime secrets); `assemble` adds what the settings decide."""
    app = FastAPI(
        title="AIFX Reversal Engine",
        description="Two-stage forex reversal model (seed-compatible routes and envelope).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses=ERROR_RESPONSES,
    )
    _add_error_handlers(app)
    # The routers' routes themselves, in the seed's order: this FastAPI's include_router() adds one opaque
    # route object, which neither the route templates of BentoML's metrics (route_labels.py) nor the 404
    # handler can see into.
    routers = (model_routes, predict_routes, experiment_routes, data_routes, evaluation_routes, signal_routes)
    for module in routers:
        app.router.routes.extend(module.router.routes)
    app.router.routes.extend(predict_routes.legacy.routes)
    return app


def assemble(
    app: FastAPI, settings: Settings, buckets: TokenBuckets | None = None, budget: ByteBudget | None = None
) -> FastAPI:
    """Give the app its settings and guards (request id, rate limit, body limits), once: a later call keeps them.

    buckets and budget: the rate limit and body budget to share with the native APIs (made here when absent);
    app.state.buckets and app.state.budget hold them. Starlette stacks middleware at the first request.
    """
    if getattr(app.state, "settings", None) is not None:
        return app
    limits = BodyLimits.of(settings)
    if buckets is None:
        buckets = buckets_of(settings.rate_limit_per_second, settings.rate_limit_burst)
    budget = budget or ByteBudget(limits.budget)
    app.state.settings, app.state.buckets, app.state.budget = settings, buckets, budget
    app.add_middleware(BodySizeLimit, limits=limits, budget=budget)
    app.add_middleware(RateLimit, buckets=buckets, settings=settings)
    app.add_middleware(RequestId)  # outermost: a 413 names its request too
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        metrics.count_error(exc.reason)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return fail(exc.message, exc.status, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.count_error("validation")
        return fail(*validation_message(exc, request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        metrics.count_error("not_found" if exc.status_code in (404, 405) else "validation")
        return fail(str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(DatabaseResting)
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        """A database failure a route did not map itself is 503, never 500 (what failed stays in the log)."""
        error = database_unavailable(exc, f"{request.method} {request.url.path[:100]} did not complete")
        metrics.count_error(error.reason)
        return fail(error.message, error.status, {"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        metrics.count_error("internal")
        eid = error_id()  # the exception text goes to the log only
        logger.exception("error %s: unhandled error on %s %s", eid, request.method, request.url.path)
        return fail(with_error_id("internal error; retry later, or report the error id", eid), 500)
