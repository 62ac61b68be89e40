"""Bounded endpoint labels for BentoML's /metrics, and the service class that documents the native APIs.

BentoML's request metrics label each request by its raw path, so 1,000 random paths
would make 1,000 series. The service wraps its ASGI app so that those metrics see
the route template (`/reversal/models/{version}`, `/{unmatched}`) and then restores the
real path (via a service middleware) before routing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import attr
import bentoml
from starlette.applications import Starlette
from starlette.routing import Mount

from aifx import metrics
from aifx.http.lean_app import LeanAppFactory
from aifx.serving import context
from aifx.serving.errors import envelope
from aifx.serving.schemas import inline_schema

RAW_PATH = "aifx.raw_path"
UNMATCHED = "/{unmatched}"
Scope = dict[str, Any]

# Routes of the native APIs (aifx/http/native.py): explicit, so that none takes over a seed route
# (a method `predict` at its default route would answer the legacy `/predict`).
NATIVE_ROUTES = {
    "predict": "/v1/predict",
    "predict_batch": "/v1/predict_batch",
    "compare": "/v1/compare",
    "list_models": "/v1/models",
    "describe_model": "/v1/models/describe",
    "experiment_metrics": "/v1/experiments/metrics",
    "switch_model": "/v1/models/switch",
}
NATIVE_ERROR_STATUSES = {
    400: "Bad input: `error` says what is wrong, `detail` lists each field",
    401: "No admin token (admin APIs)",
    403: "Wrong admin token, or a request from a web page of another site",
    404: "Unknown version or experiment",
    409: "Conflict with the service's state",
    413: "Request body over the route's limit",
    415: "Content-Type is not JSON",
    422: "A value names something that does not exist (e.g. an unknown version in a body field)",
    429: "Rate limit (Retry-After)",
    500: "Internal error (the error id is in the message and the log)",
    503: "A version, stage model or database is unavailable (Retry-After where known)",
}


def route_templates(app: Starlette) -> Callable[[str], str]:
    """path -> the template of the route that serves it (or /{unmatched}); cached, bounded."""
    patterns: list[tuple[re.Pattern[str], str]] = []

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                inner = getattr(route.app, "routes", None)
                if isinstance(route.app, Starlette) and inner is not None:
                    walk(inner, prefix + route.path)
                else:
                    esc = re.escape(prefix + route.path)
                    patterns.append((re.compile(f"^{esc}(/.*)?$"), f"{prefix}{route.path}/{{path}}"))
            elif hasattr(route, "path_regex") and hasattr(route, "path"):
                body = route.path_regex.pattern.lstrip("^")
                patterns.append((re.compile("^" + re.escape(prefix) + body), prefix + route.path))

    walk(list(app.routes), "")

    @lru_cache(maxsize=4096)
    def template(path: str) -> str:
        if "\n" in path:  # Starlette's Mount regex (`.*`) never matches a newline: no route serves it
            return UNMATCHED
        for regex, tpl in patterns:
            if regex.match(path):
                return tpl
        return UNMATCHED

    return template


class TemplatedPaths:
    """Outermost wrapper: scope["path"] becomes the route template for BentoML's metrics."""

    def __init__(self, app: Any, template: Callable[[str], str]) -> None:
        self.app = app
        self.template = template

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = scope["path"]
            tpl = self.template(raw)
            if tpl != raw:
                scope = {**scope, "path": tpl, RAW_PATH: raw}
        await self.app(scope, receive, send)


class RestorePath:
    """Service middleware (inside BentoML's metrics middleware): routing sees the real path again."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        raw = scope.get(RAW_PATH)
        if raw is not None:
            if scope["type"] == "http" and scope["path"] == UNMATCHED:
                await _not_found(raw, scope, send)  # the seed envelope, not the outer app's text/plain 404
                return
            scope = {**scope, "path": raw}
        await self.app(scope, receive, send)


async def _not_found(path: str, scope: Scope, send: Any) -> None:
    """404 in the seed envelope for a path no route serves."""
    metrics.count_error("not_found")
    rid = context.from_headers(scope.get("headers", []))
    message = f"no route serves {path[:200]!r}; the API is described at /docs.json"
    body = json.dumps(envelope(None, message, request_id=rid)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (context.HEADER.encode(), rid.encode()),
    ]
    with context.bound(rid, path):  # outside the request id middleware: the access line names it too
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})


WORKER_START = "__aifx_worker_start_hook__"


def on_worker_start(func: Callable[[], None]) -> staticmethod[[], None]:
    """Mark a hook of the service class (no self) that each worker runs when it builds its ASGI app, as BentoML's
    `on_deployment` marks one for the `bentoml serve` process: settings are read there, not at import."""
    setattr(func, WORKER_START, True)
    return staticmethod(func)


class BoundedLabelsService(bentoml.Service):  # type: ignore[type-arg]
    """A bentoml.Service whose ASGI app labels request metrics by route template, and runs its worker-start hooks."""

    def to_asgi(self, is_main: bool = True) -> Any:
        # BentoML's worker calls this before it builds uvicorn's Config: the hooks' environment (the trusted
        # proxies) is in place when uvicorn reads it.
        for name in dir(self.inner):
            member = getattr(self.inner, name)
            if callable(member) and getattr(member, WORKER_START, False):
                member()
        if not any(cls is RestorePath for cls, _ in self.middlewares):
            self.add_asgi_middleware(RestorePath)
        self.inject_config()  # as bentoml.Service.to_asgi, with the factory that leaves out what is off
        app = LeanAppFactory(self, is_main=is_main)()
        return TemplatedPaths(app, route_templates(app))

    def schema(self) -> dict[str, Any]:
        """/schema.json, which BentoML's clients decode answers by: native APIs keep their `null`s.

        BentoML flattens `X | None` to `X`, and its client then fails on a null list (`ci95` of an
        experiment without outcomes).
        """
        document = super().schema()
        for route in document.get("routes", []):
            api = self.apis.get(route.get("name", ""))
            if api is not None and api.route in NATIVE_ROUTES.values():
                route["input"] = inline_schema(api.input_spec)
                route["output"] = inline_schema(api.output_spec, mode="serialization")
        return document

    @property
    def openapi_spec(self) -> Any:
        """BentoML labels its document 3.0.2, but the FastAPI/pydantic schemas in it are OpenAPI 3.1."""
        spec = attr.evolve(super().openapi_spec, openapi="3.1.0")
        _document_native_apis(spec, self.apis)
        return spec


def _document_native_apis(spec: Any, apis: dict[str, Any]) -> None:
    """The native APIs' bodies as pydantic states them (BentoML's flattened schemas drop `null`), and their
    real error answers: `{"error", "request_id"}` (and `detail` for bad input) per status."""
    spec.components.setdefault("schemas", {})["NativeError"] = NATIVE_ERROR
    ref = {"schema": {"$ref": "#/components/schemas/NativeError"}}
    errors = {
        code: {"description": text, "content": {"application/json": ref}}
        for code, text in NATIVE_ERROR_STATUSES.items()
    }
    for api in apis.values():
        item = spec.paths.get(api.route)
        if api.route not in NATIVE_ROUTES.values() or item is None or not isinstance(item.post, dict):
            continue
        body = {"schema": inline_schema(api.input_spec)}
        item.post["requestBody"] = {"required": True, "content": {"application/json": body}}
        answer = {"schema": inline_schema(api.output_spec, mode="serialization")}
        item.post["responses"] = {
            200: {"description": "Successful Response", "content": {"application/json": answer}},
            **errors,
        }


NATIVE_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, in one line"},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "detail": {"type": "array", "items": {"type": "object"}, "description": "one entry per invalid field"},
    },
    "description": "Error answer of a native API (413, 429 and 503 from the guards also carry the seed envelope)",
}
