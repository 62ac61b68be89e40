"""The REST API: the seed's routes and envelope, as a FastAPI app the entry service mounts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from aifx import instruments, metrics
from aifx.api import ab_tests as ab
from aifx.api.ab_tests import database_unavailable
from aifx.api.access import (
    check_admin,
    check_outcome,
    check_same_site,
    is_admin,
    is_local_operator,
    is_trusted,
)
from aifx.api.asgi import BodyLimits, BodySizeLimit, ByteBudget
from aifx.api.body import json_body, openapi_body
from aifx.api.context import RequestId, get_logger
from aifx.api.data_routes import add_data_routes
from aifx.api.errors import (
    ERROR_RESPONSES,
    ApiError,
    UnsupportedMediaType,
    error_id,
    fail,
    format_errors,
    ok,
    with_error_id,
)
from aifx.api.evaluation_routes import add_evaluation_routes
from aifx.api.evaluation_routes import experiment_metrics as metrics_with_paired
from aifx.api.inputs import to_candles
from aifx.api.outcome_log import DatabaseResting
from aifx.api.parts import Parts
from aifx.api.ratelimit import RateLimit, TokenBuckets, buckets_of
from aifx.api.responses import (
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
from aifx.api.schemas import (
    TIMEFRAME_PATTERN,
    BatchRequest,
    CandlesRequest,
    CompareRequest,
    ExperimentCreate,
    LegacyPredictRequest,
    OutcomeRequest,
    PredictRequest,
    QueryTime,
)
from aifx.api.trusted_bars import score_closed_bars
from aifx.candles import Candles
from aifx.settings import Settings
from aifx.trade import UnknownPair, pip_size
from experiments.schema import ID_LEN

logger = get_logger("bentoml.aifx.api")
AdminAuth = Annotated[str | None, Header()]
ExperimentId = Annotated[str, Path(max_length=ID_LEN, description=f"1-{ID_LEN} characters of A-Z a-z 0-9 _ . -")]
PredictionId = Annotated[str, Path(max_length=36, description="the prediction_id a predict response returned")]
Version = Annotated[str, Path(max_length=ID_LEN, description="a configured model version, e.g. v3.1")]
_EXAMPLE = (
    '{"pair": "EUR/USD", "timeframe": "1h", "data": [{"timestamp": "2017-01-02T00:00:00Z", '
    '"open": 1.05, "high": 1.06, "low": 1.04, "close": 1.055}, ...]}'
)
_EXAMPLES = (  # path prefix -> body example for the bad-JSON / empty-body messages
    (
        "/reversal/experiments",
        '{"experiment_id": "v30_vs_v31", "name": "Swing Point vs Profitable Logic", '
        '"variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5}',
    ),
    ("/reversal/predictions/", '{"pips": 12.5}'),
)


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


class LiveFilters(BaseModel):
    """Filters of the `live` block: pair, timeframe, bars since a time."""

    model_config = ConfigDict(extra="forbid")

    pair: str | None = Field(default=None, max_length=32)
    timeframe: str | None = Field(default=None, pattern=TIMEFRAME_PATTERN)
    since: QueryTime | None = Field(default=None, description="ISO-8601; bars at or after this time")


async def models_with_live(p: Parts, filters: LiveFilters | None = None) -> dict[str, Any]:
    """GET /reversal/models with each version's `live` block (left out when the database does not answer)."""
    data = await p.registry.models()
    blocks = await _live(p, [m["version"] for m in data["versions"]], filters or LiveFilters())
    return {**data, "versions": [m | ({"live": blocks[m["version"]]} if blocks else {}) for m in data["versions"]]}


async def model_with_live(p: Parts, version: str, filters: LiveFilters | None = None) -> dict[str, Any]:
    """GET /reversal/models/{version} with its `live` block."""
    data = await p.registry.model(version)
    blocks = await _live(p, [version], filters or LiveFilters())
    return data | ({"live": blocks[version]} if blocks else {})


async def _live(p: Parts, versions: list[str], f: LiveFilters) -> dict[str, dict[str, Any]]:
    if p.outcomes is None:
        return {}
    since = f.since.replace(tzinfo=f.since.tzinfo or UTC) if f.since else None
    try:
        return await p.outcomes.live(versions, f.pair, f.timeframe, since)
    except UnknownPair as exc:
        raise ApiError(f"pair: {exc}", status=422) from None
    except (SQLAlchemyError, DatabaseResting) as exc:  # the models answer without their live figures
        logger.warning("live figures unavailable: %s", type(exc).__name__)
        return {}


async def add_candles(p: Parts, body: CandlesRequest) -> dict[str, Any]:
    """Store trusted candles, score the bars they close and resolve what they cover; the counts of new,
    duplicate and conflicting candles and of bars scored."""
    if p.outcomes is None:
        raise ApiError("the outcome loop is off (AIFX_OUTCOMES=false): candles are not stored", status=409,
                       reason="conflict")  # fmt: skip
    inst = instruments.instrument(body.pair, p.registry.settings.pip_sizes)
    if inst is None:
        raise ApiError(f"pair: {body.pair!r:.40} is not in the instrument table ({unknown_pair(body.pair)}); "
                       "the service reads extra pip sizes from AIFX_PIP_SIZES", status=422)  # fmt: skip
    timeframe = instruments.canonical_timeframe(body.timeframe)
    if timeframe is None:
        raise ApiError(f"timeframe: {body.timeframe!r:.20} is not a timeframe such as 1m, 15m, 1h, 4h, 1d or 1w",
                       status=422)  # fmt: skip
    candles = to_candles(body.data)
    check_trusted_candles(candles, inst, timeframe)
    counts = await p.outcomes.add_candles(inst.name, timeframe, candles)
    posted = [t.replace(tzinfo=UTC) for t in candles.timestamp.astype("datetime64[us]").astype(datetime)]
    scored = await score_closed_bars(p.predictor, p.outcomes, inst.name, timeframe, posted)
    counted = {k: int(counts.get(k, 0)) for k in ("inserted", "duplicates", "conflicts")}
    return {"pair": inst.name, "timeframe": timeframe, **counted, "bars_scored": scored}


def check_trusted_candles(candles: Candles, inst: instruments.Instrument, timeframe: str) -> None:
    """422 for a candle off the timeframe's grid, more than one bar in the future, or outside the band."""
    seconds = instruments.timeframe_seconds(timeframe) or 0
    micros = candles.timestamp.astype("datetime64[us]").astype(np.int64)
    grid = instruments.grid_seconds(seconds) * 1_000_000
    off = np.flatnonzero(micros % grid)
    if off.size:
        raise ApiError(f"data[{off[0]}]: timestamp is not on the {timeframe} grid (bars start every "
                       f"{grid // 1_000_000} s from 1970-01-01T00:00:00Z)", status=422)  # fmt: skip
    future = np.flatnonzero(micros > (datetime.now(UTC).timestamp() + seconds) * 1e6)
    if future.size:
        raise ApiError(f"data[{future[0]}]: timestamp is more than one {timeframe} bar in the future; post closed "
                       "candles only", status=422)  # fmt: skip
    bad = np.flatnonzero(~((candles.low >= inst.low) & (candles.high <= inst.high)))
    if bad.size:
        raise ApiError(f"data[{bad[0]}]: {inst.describe_band()} (a price in another unit or a bad tick)", status=422)


def unknown_pair(pair: str) -> str:
    """Why a pair is not in the instrument table, from the pip table's own message."""
    try:
        pip_size(pair)
    except UnknownPair as exc:
        return str(exc)
    return "only configured pairs and the pip table's are logged"


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
        return fail(*_validation_message(exc, request.url.path))

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


def _example(path: str) -> str:
    """A request body example for the route at path."""
    return next((example for prefix, example in _EXAMPLES if path.startswith(prefix)), _EXAMPLE)


def _validation_message(exc: RequestValidationError, path: str = "") -> tuple[str, int]:
    """A readable message and status for FastAPI's 422 (bad JSON and empty bodies are 400)."""
    example = _example(path)
    errors = list(exc.errors())
    kinds = {e.get("type") for e in errors}
    if "json_invalid" in kinds:
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON ({reason}); send a JSON object like {example}", 400
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return f"request body is empty; send a JSON object like {example}", 400
    not_object = ("model_attributes_type", "model_type")
    if any(e.get("type") in not_object and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return f"request body must be a JSON object (Content-Type: application/json) like {example}", 400
    return format_errors(errors), 422
