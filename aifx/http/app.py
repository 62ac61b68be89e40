"""The REST API: the seed's routes and envelope, as a FastAPI app the entry service mounts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from aifx import metrics
from aifx.http import signal_routes
from aifx.http.access import (
    check_admin,
    check_outcome,
    check_same_site,
    is_admin,
    is_local_operator,
    is_trusted,
)
from aifx.http.asgi import BodyLimits, BodySizeLimit, ByteBudget
from aifx.http.body import json_body, openapi_body
from aifx.http.data_routes import add_data_routes
from aifx.http.envelope import ERROR_RESPONSES, fail, ok, validation_message
from aifx.http.evaluation_routes import add_evaluation_routes
from aifx.http.evaluation_routes import experiment_metrics as metrics_with_paired
from aifx.http.ratelimit import RateLimit, TokenBuckets, buckets_of
from aifx.http.responses import (
    BatchData,
    CandlesData,
    CompareData,
    Envelope,
    ExperimentData,
    ExperimentList,
    ExperimentMetricsData,
    Health,
    LegacyData,
    ModelInfo,
    ModelsData,
    OutcomeData,
    PredictionData,
    ReloadData,
    SwitchData,
)
from aifx.serving import ab_tests as ab
from aifx.serving.ab_tests import database_unavailable
from aifx.serving.context import RequestId, get_logger
from aifx.serving.errors import ApiError, UnsupportedMediaType, error_id, with_error_id
from aifx.serving.outcome_log import DatabaseResting
from aifx.serving.parts import Parts
from aifx.serving.schemas import (
    BatchRequest,
    CandlesRequest,
    CompareRequest,
    ExperimentCreate,
    LegacyPredictRequest,
    OutcomeRequest,
    PredictRequest,
)
from aifx.serving.views import LiveFilters, add_candles, model_with_live, models_with_live
from aifx.settings import Settings
from experiments.schema import ID_LEN

logger = get_logger("bentoml.aifx.api")
AdminAuth = Annotated[str | None, Header()]
ExperimentId = Annotated[str, Path(max_length=ID_LEN, description=f"1-{ID_LEN} characters of A-Z a-z 0-9 _ . -")]
PredictionId = Annotated[str, Path(max_length=36, description="the prediction_id a predict response returned")]
Version = Annotated[str, Path(max_length=ID_LEN, description="a configured model version, e.g. v3.1")]


def parts(request: Request) -> Parts:
    """The registry, predictor and A/B tests the entry service attached at start-up."""
    attached = getattr(request.app.state, "parts", None)
    if attached is None:
        raise ApiError("the service is starting; retry in a moment", status=503, reason="stage_unavailable")
    return attached


def check_json_content_type(content_type: str | None) -> None:
    """JSON routes take `application/json` (or `application/*+json`); no Content-Type is accepted for old clients.

    Form and text types (what an HTML form or a simple cross-site request can send) are 415.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"Content-Type {media[:100]!r} is not accepted: send the body as JSON with `Content-Type: application/json`"
    )


async def json_only(request: Request) -> None:
    """Route dependency of every POST route: 415 for a Content-Type that is not JSON (before the body is read)."""
    check_json_content_type(request.headers.get("content-type"))


JSON_ONLY = [Depends(json_only)]


def admin_guard(settings: Settings) -> list[Any]:
    """Route dependencies that check the admin token before the body or path is validated (401 before 422)."""

    async def admin_only(request: Request) -> None:
        check_same_site(settings, request.scope)
        check_admin(settings, request.scope)

    return [Depends(admin_only), *JSON_ONLY]


def outcome_guard(settings: Settings) -> list[Any]:
    """Route dependencies of the outcome route: same-site check, then AIFX_OUTCOME_TOKEN or the admin token."""

    async def outcome_writer(request: Request) -> None:
        check_same_site(settings, request.scope)
        check_outcome(settings, request.scope)

    return [Depends(outcome_writer), *JSON_ONLY]


def _without_salt(experiment: dict[str, Any]) -> dict[str, Any]:
    """An experiment as non-admin callers see it: the salt would let anyone compute assignments offline."""
    return {k: v for k, v in experiment.items() if k != "salt"}


def create_app(settings: Settings, buckets: TokenBuckets | None = None, budget: ByteBudget | None = None) -> FastAPI:
    """The FastAPI app with the seed's routes; its parts are attached later as app.state.parts.

    buckets and budget: the rate limit and body budget shared with the native APIs (made here when absent).
    """
    limits = BodyLimits.of(settings)
    if buckets is None:
        buckets = buckets_of(settings.rate_limit_per_second, settings.rate_limit_burst)
    app = FastAPI(
        title="AIFX Reversal Engine",
        description="Two-stage forex reversal model (seed-compatible routes and envelope).",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses=ERROR_RESPONSES,
    )
    app.add_middleware(BodySizeLimit, limits=limits, budget=budget or ByteBudget(limits.budget))
    app.add_middleware(RateLimit, buckets=buckets, settings=settings)
    app.add_middleware(RequestId)  # outermost: a 413 names its request too
    _add_error_handlers(app)

    @app.get("/health", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    async def health(request: Request, authorization: AdminAuth = None) -> JSONResponse:
        """Service health (flat, as in the seed); why a version failed only for the admin (or a local caller
        without tokens)."""
        details = is_admin(settings, authorization) or is_local_operator(settings, request.scope)
        body, status = await parts(request).registry.health(details)
        return JSONResponse(body, status_code=status)

    @app.post(
        "/reversal/predict",
        response_model=Envelope[PredictionData],
        tags=["reversal"],
        openapi_extra=openapi_body(PredictRequest),
        dependencies=JSON_ONLY,
    )
    async def predict(
        body: Annotated[PredictRequest, json_body(PredictRequest)], request: Request, authorization: AdminAuth = None
    ) -> JSONResponse:
        """Predict a reversal signal from the latest candles (or precomputed features).

        A long or short from candles carries `trade` (the levels its outcome is scored by). With the
        outcome (or admin) token the request's candles also resolve earlier bars (README "Outcomes").
        """
        return ok(await parts(request).predictor.predict(body, is_trusted(settings, authorization)))

    @app.post(
        "/reversal/predict/batch",
        response_model=Envelope[BatchData],
        tags=["reversal"],
        openapi_extra=openapi_body(BatchRequest),
        dependencies=JSON_ONLY,
    )
    async def predict_batch(
        body: Annotated[BatchRequest, json_body(BatchRequest)], request: Request, authorization: AdminAuth = None
    ) -> JSONResponse:
        """Many predict requests in one call; each item succeeds or fails on its own."""
        return ok(await parts(request).predictor.predict_many(body.items, is_trusted(settings, authorization)))

    @app.post(
        "/reversal/compare",
        response_model=Envelope[CompareData],
        tags=["reversal"],
        openapi_extra=openapi_body(CompareRequest),
        dependencies=JSON_ONLY,
    )
    async def compare(body: Annotated[CompareRequest, json_body(CompareRequest)], request: Request) -> JSONResponse:
        """The same input through several versions, with consensus and disagreement."""
        return ok(await parts(request).predictor.compare(body))

    @app.get("/reversal/models", response_model=Envelope[ModelsData], tags=["models"])
    async def list_models(request: Request, live: Annotated[LiveFilters, Query()]) -> JSONResponse:
        """Active version, default, fallback order and every configured version with its metrics and `live` block."""
        return ok(await models_with_live(parts(request), live))

    @app.get("/reversal/models/{version}", response_model=Envelope[ModelInfo], tags=["models"])
    async def get_model(version: Version, request: Request, live: Annotated[LiveFilters, Query()]) -> JSONResponse:
        """One version: stages, threshold, features, window, label parameters, metrics, `live` block."""
        return ok(await model_with_live(parts(request), version, live))

    @app.post(
        "/reversal/candles",
        response_model=Envelope[CandlesData],
        tags=["outcomes"],
        openapi_extra=openapi_body(CandlesRequest),
        dependencies=outcome_guard(settings),
    )
    async def post_candles(
        body: Annotated[CandlesRequest, json_body(CandlesRequest)], request: Request
    ) -> JSONResponse:
        """Closed candles from a trusted source (outcome or admin token): they resolve logged bars' outcomes."""
        return ok(await add_candles(parts(request), body))

    admin = admin_guard(settings)

    @app.post("/reversal/models/reload", response_model=Envelope[ReloadData], tags=["models"], dependencies=admin)
    async def reload_models(request: Request) -> JSONResponse:
        """Admin: serve configured versions imported into the model store since the start, in every worker.

        Answers once every worker will load them on its next request (after the state TTL): which
        versions serve now, which were added, and why the others do not.
        """
        return ok(await parts(request).registry.reload())

    @app.post(
        "/reversal/models/{version}/switch",
        response_model=Envelope[SwitchData],
        tags=["models"],
        dependencies=admin,
    )
    async def switch_model(version: Version, request: Request) -> JSONResponse:
        """Admin: make a version active in every worker (persisted)."""
        return ok(await parts(request).registry.switch(version))

    _add_experiment_routes(app, settings, admin)
    add_data_routes(app, admin, parts)
    add_evaluation_routes(app, admin, parts)
    # The router's routes themselves: this FastAPI's include_router() adds one opaque route object, which
    # neither the route templates of BentoML's metrics (aifx/http/route_labels.py) nor the 404 handler can see into.
    app.router.routes.extend(signal_routes.router.routes)

    @app.post(
        "/predict",
        response_model=Envelope[LegacyData],
        tags=["legacy"],
        openapi_extra=openapi_body(LegacyPredictRequest),
        dependencies=JSON_ONLY,
    )
    async def predict_legacy(
        body: Annotated[LegacyPredictRequest, json_body(LegacyPredictRequest)], request: Request
    ) -> JSONResponse:
        """Legacy route of the old engine: {prediction, confidence, factors}."""
        return ok(await parts(request).predictor.predict_legacy(body))

    return app


def _add_experiment_routes(app: FastAPI, settings: Settings, admin: list[Any]) -> None:
    """SPEC 6: experiment lifecycle (admin), listing, metrics and prediction outcomes (outcome token)."""

    @app.post(
        "/reversal/experiments",
        status_code=201,
        response_model=Envelope[ExperimentData],
        tags=["experiments"],
        dependencies=admin,
        openapi_extra=openapi_body(ExperimentCreate),
    )
    async def create_experiment(
        body: Annotated[ExperimentCreate, json_body(ExperimentCreate)], request: Request
    ) -> JSONResponse:
        """Admin: create an A/B experiment between two loaded versions (traffic_split = share sent to B)."""
        p = parts(request)
        return ok(await ab.create(p.registry, p.ab, body), status=201)

    @app.post(
        "/reversal/experiments/{experiment_id}/activate",
        response_model=Envelope[ExperimentData],
        tags=["experiments"],
        dependencies=admin,
    )
    async def activate_experiment(experiment_id: ExperimentId, request: Request) -> JSONResponse:
        """Admin: activate an experiment (409 while another one is active)."""
        return ok(await ab.activate(parts(request).ab, experiment_id))

    @app.post(
        "/reversal/experiments/{experiment_id}/stop",
        response_model=Envelope[ExperimentData],
        tags=["experiments"],
        dependencies=admin,
    )
    async def stop_experiment(experiment_id: ExperimentId, request: Request) -> JSONResponse:
        """Admin: stop the active experiment (409 when it is not active); its data stays readable."""
        return ok(await ab.stop(parts(request).ab, experiment_id))

    @app.get("/reversal/experiments", response_model=Envelope[ExperimentList], tags=["experiments"])
    async def list_experiments(request: Request, authorization: AdminAuth = None) -> JSONResponse:
        """Every experiment, oldest first, and the active one's id (`salt` only for the admin token)."""
        data = await ab.listing(parts(request).ab)
        if not is_admin(settings, authorization):
            data = {**data, "experiments": [_without_salt(e) for e in data["experiments"]]}
        return ok(data)

    @app.get(
        "/reversal/experiments/{experiment_id}/metrics",
        response_model=Envelope[ExperimentMetricsData],
        tags=["experiments"],
    )
    async def experiment_metrics(experiment_id: ExperimentId, request: Request) -> JSONResponse:
        """Per-variant count, signals, avg_confidence and outcomes, the B-vs-A tests and winner (fixed horizon),
        the sample-ratio-mismatch check and, with the outcome loop, the paired always-valid view."""
        return ok(_without_salt(await metrics_with_paired(parts(request), experiment_id)))

    @app.post(
        "/reversal/predictions/{prediction_id}/outcome",
        response_model=Envelope[OutcomeData],
        tags=["experiments"],
        responses={201: {"model": Envelope[OutcomeData], "description": "Outcome recorded"}},
        dependencies=outcome_guard(settings),
        openapi_extra=openapi_body(OutcomeRequest),
    )
    async def record_outcome(
        prediction_id: PredictionId, body: Annotated[OutcomeRequest, json_body(OutcomeRequest)], request: Request
    ) -> JSONResponse:
        """The realized pips of a prediction served under an experiment (201 new, 200 same again, 409 different).

        Needs `Authorization: Bearer <AIFX_OUTCOME_TOKEN>` (or the admin token) when either token is set.
        """
        data, status = await ab.record_outcome(parts(request).ab, prediction_id, body.pips)
        return ok(data, status=status)


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
