"""BentoML-native APIs: the same parts as the REST routes, typed for BentoML clients and `bentoml.depends`.

The entry service's `@bentoml.api` methods call these functions. They give the same answers as
the REST routes (the `data` of the seed's envelope, as a pydantic model) and the same errors
(status and message, as BentoML's `{"error": ...}` body). Body-size limit, rate limit, request
id and JSON-only bodies are applied by `NativeGuards`, the service middleware in front of them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar, cast

from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aifx import metrics
from aifx.http.access import check_admin, check_same_site, is_trusted
from aifx.http.asgi import BodyLimits, BodySizeLimit, ByteBudget
from aifx.http.deps import assembled, check_json_content_type
from aifx.http.ratelimit import RateLimit, TokenBuckets
from aifx.http.responses import (
    BatchData,
    CompareData,
    ExperimentMetricsData,
    ModelInfo,
    ModelsData,
    PredictionData,
    SwitchData,
)
from aifx.http.route_labels import NATIVE_ROUTES
from aifx.serving.ab_tests import database_unavailable
from aifx.serving.context import RequestId, current, get_logger
from aifx.serving.errors import ApiError, error_id, with_error_id
from aifx.serving.evaluation import experiment_metrics as metrics_with_paired
from aifx.serving.outcome_log import DatabaseResting
from aifx.serving.parts import Parts
from aifx.serving.schemas import BatchRequest, CompareRequest, PredictRequest
from aifx.serving.views import model_with_live, models_with_live
from aifx.settings import Settings
from experiments.schema import ID_LEN

logger = get_logger("bentoml.aifx.native")
M = TypeVar("M", bound=BaseModel)
PICKLE = "application/vnd.bentoml+pickle"  # BentoML's own media type between services (refused by the main server)

ROUTES = NATIVE_ROUTES
# BentoML's own routes other than its probes (/livez, /healthz, /readyz): rate-limited like the API.
BENTOML_ROUTES = frozenset({"/metrics", "/docs.json", "/schema.json", "/"})


class VersionInput(BaseModel):
    """A configured model version."""

    version: str = Field(min_length=1, max_length=ID_LEN, examples=["v3.1"])


class ExperimentInput(BaseModel):
    """An experiment id."""

    experiment_id: str = Field(min_length=1, max_length=ID_LEN, examples=["v30_vs_v31"])


class Sparse(BaseModel):
    """Serialised as the REST route sends it: a field the answer does not set is absent, not null."""

    def model_dump_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("exclude_unset", True)
        return super().model_dump_json(**kwargs)


@cache
def _sparse(model: type[M]) -> type[M]:
    return cast("type[M]", type(model.__name__, (Sparse, model), {"__module__": model.__module__}))


def out(model: type[M], data: Any) -> M:
    """data as the output model (validated: a closed schema), serialised without unset fields."""
    return _sparse(model).model_validate(data)


# BentoML hands an API its validated input's fields; model_construct() puts them back together unvalidated.


async def predict(parts: Parts, request: Request, fields: dict[str, Any]) -> PredictionData:
    """The predict route's answer for the same body (and the same outcome token)."""
    body = PredictRequest.model_construct(**fields)
    return out(PredictionData, await parts.predictor.predict(body, _trusted(parts, request)))


async def predict_batch(parts: Parts, request: Request, fields: dict[str, Any]) -> BatchData:
    """The batch route's answer for the same items."""
    body = BatchRequest.model_construct(**fields)
    return out(BatchData, await parts.predictor.predict_many(body.items, _trusted(parts, request)))


def _trusted(parts: Parts, request: Request) -> bool:
    return is_trusted(parts.registry.settings, request.headers.get("authorization"))


async def compare(parts: Parts, fields: dict[str, Any]) -> CompareData:
    """The compare route's answer for the same body."""
    return out(CompareData, await parts.predictor.compare(CompareRequest.model_construct(**fields)))


async def list_models(parts: Parts) -> ModelsData:
    """GET /reversal/models."""
    return out(ModelsData, await models_with_live(parts))


async def describe_model(parts: Parts, version: str) -> ModelInfo:
    """GET /reversal/models/{version}."""
    return out(ModelInfo, await model_with_live(parts, version))


async def experiment_metrics(parts: Parts, experiment_id: str) -> ExperimentMetricsData:
    """GET /reversal/experiments/{id}/metrics (without the salt)."""
    data = await metrics_with_paired(parts, experiment_id)
    return out(ExperimentMetricsData, {k: v for k, v in data.items() if k != "salt"})


async def switch_model(parts: Parts, request: Request, version: str) -> SwitchData:
    """Admin: POST /reversal/models/{version}/switch (same token and same-site rule)."""
    check_same_site(parts.registry.settings, request.scope)
    check_admin(parts.registry.settings, request.scope)
    return out(SwitchData, await parts.registry.switch(version))


async def answer(ctx: Any, call: Callable[[], Awaitable[M]]) -> M | Response:
    """The call's model, or its error as `{"error", "request_id"}` with the REST route's status."""
    try:
        return await call()
    except ApiError as exc:
        metrics.count_error(exc.reason)
        return _error(ctx, exc.status, exc.message, {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)
    except (SQLAlchemyError, DatabaseResting) as exc:  # a failure no part mapped itself: 503, never 500
        error = database_unavailable(exc, "the call did not complete")
        metrics.count_error(error.reason)
        return _error(ctx, error.status, error.message, {"Retry-After": "1"})
    except Exception:
        metrics.count_error("internal")
        eid = error_id()  # the exception text goes to the log only
        logger.exception("error %s: unhandled error in a native API", eid)
        return _error(ctx, 500, with_error_id("internal error; retry later, or report the error id", eid))


def _error(ctx: Any, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    ctx.response.status_code = status  # BentoML applies the context's status to a returned response
    return JSONResponse({"error": message, "request_id": current()}, status_code=status, headers=headers)


class NativeGuards:
    """Service middleware: on the native routes, the REST routes' request id, rate limit, body limit and JSON check.

    The settings, rate-limit buckets and body budget are the REST app's own objects (`rest.state`, read when
    Starlette builds this at the first request), so a client gets one budget whichever face it calls.
    """

    def __init__(self, app: Any, rest: Starlette) -> None:
        state = assembled(rest)
        settings: Settings = state.settings
        buckets: TokenBuckets | None = state.buckets
        budget: ByteBudget = state.budget
        self.app = app
        self.paths = frozenset(ROUTES.values())
        limited = BodySizeLimit(app, limits=BodyLimits.of(settings), budget=budget)
        self.guarded = RequestId(RateLimit(limited, buckets=buckets, settings=settings))
        self.limited = RateLimit(app, buckets=buckets, settings=settings)  # BentoML's own routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path in BENTOML_ROUTES or path.startswith("/static_content/")):
            await self.limited(scope, receive, send)  # /metrics, /docs.json, /schema.json, the docs page
            return
        if scope["type"] != "http" or path not in self.paths:
            await self.app(scope, receive, send)
            return
        media = _content_type(scope)
        if media != PICKLE:
            try:
                check_json_content_type(media)
            except ApiError as exc:
                await _refuse(send, exc.status, exc.message)
                return
        await self.guarded(scope, receive, send)


def _content_type(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return None


async def _refuse(send: Any, status: int, message: str) -> None:
    metrics.count_error("validation")
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
