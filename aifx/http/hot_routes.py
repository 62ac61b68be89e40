"""The two hot routes (predict and batch) served below FastAPI's router, with the REST app's own guards and handlers.

Routing, dependency solving and Starlette's exception middlewares cost about a third of a worker's CPU per
predict (docs/performance.md, issue 27) around a pass that takes a millisecond. `HotRoutes` (a service
middleware, inside BentoML's metrics, access log and concurrency limit) answers `POST /reversal/predict` and
`POST /reversal/predict/batch` itself: the same middlewares as the app (the same objects' buckets and budget),
the same checks in FastAPI's order (Content-Type, body, parts, token), the same predictor calls and the app's
own exception handlers, so an answer is the one the FastAPI route gives. Everything else goes to the app.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from aifx.http.access import is_trusted
from aifx.http.body import read_model
from aifx.http.deps import app_parts, assembled, check_json_content_type
from aifx.http.envelope import ok
from aifx.serving.parts import Parts
from aifx.serving.schemas import BatchRequest, PredictRequest

Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


async def _predict(parts: Parts, trusted: bool, body: PredictRequest) -> Response:
    return ok(await parts.predictor.predict(body, trusted))


async def _batch(parts: Parts, trusted: bool, body: BatchRequest) -> Response:
    return ok(await parts.predictor.predict_many(body.items, trusted))


HOT: dict[str, tuple[type[Any], Callable[..., Awaitable[Response]]]] = {
    "/reversal/predict": (PredictRequest, _predict),
    "/reversal/predict/batch": (BatchRequest, _batch),
}


class HotRoutes:
    """Service middleware: the hot routes answered through the app's middlewares and handlers, not its router."""

    def __init__(self, app: Any, rest: FastAPI) -> None:
        self.app = app
        self.rest = rest
        assembled(rest)  # built at the first request: the app has its guards by then, or this refuses to start
        self.guarded = _guards(rest, self._serve)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in HOT:
            await self.guarded({**scope, "app": self.rest}, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        model, endpoint = HOT[scope["path"]]
        try:
            # FastAPI's order: the route's JSON-only dependency, then the body, the parts and the token.
            check_json_content_type(request.headers.get("content-type"))
            body = await read_model(request, model)
            parts = await app_parts(request)
            trusted = is_trusted(self.rest.state.settings, request.headers.get("authorization"))
            response = await endpoint(parts, trusted, body)
        except Exception as exc:  # noqa: BLE001 - the app's own handler answers it, as its router would
            response = await self._handled(request, exc)
        await response(scope, receive, send)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """The app's exception handler of the nearest class of `exc` (Starlette's lookup), re-raised without one."""
        handlers = self.rest.exception_handlers
        for cls in type(exc).__mro__:
            handler = handlers.get(cls)
            if handler is not None:
                answer = handler(request, exc)
                return await answer if inspect.isawaitable(answer) else answer
        raise exc


def _guards(rest: FastAPI, endpoint: ASGI) -> ASGI:
    """`endpoint` inside the app's own middlewares (outermost first, as Starlette stacks them)."""
    app = endpoint
    for middleware in reversed(rest.user_middleware):
        app = middleware.cls(app, *middleware.args, **middleware.kwargs)
    return app
