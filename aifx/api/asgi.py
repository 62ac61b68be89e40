"""ASGI plumbing: the body-size limit and bounded endpoint labels for BentoML's /metrics.

BentoML's request metrics label each request by its raw path, so 1,000 random paths
would make 1,000 series. The entry service wraps its ASGI app so that those metrics see
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
from aifx.api import context
from aifx.api.errors import envelope

RAW_PATH = "aifx.raw_path"
UNMATCHED = "/{unmatched}"
Scope = dict[str, Any]


class BodySizeLimit:
    """Answer 413 (seed envelope) for bodies over max_bytes, by Content-Length or while streaming."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._reject(send)
            return
        state = {"seen": 0, "rejected": False}

        async def limited_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_bytes and not state["rejected"]:
                    state["rejected"] = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if not state["rejected"]:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Any) -> None:
        metrics.count_error("body_too_large")
        body = json.dumps(
            envelope(None, f"request body is larger than {self.max_bytes:,} bytes; send fewer candles")
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


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
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BoundedLabelsService(bentoml.Service):  # type: ignore[type-arg]
    """A bentoml.Service whose ASGI app labels request metrics by route template."""

    def to_asgi(self, is_main: bool = True) -> Any:
        if not any(cls is RestorePath for cls, _ in self.middlewares):
            self.add_asgi_middleware(RestorePath)
        app = super().to_asgi(is_main=is_main)
        return TemplatedPaths(app, route_templates(app))

    @property
    def openapi_spec(self) -> Any:
        """BentoML labels its document 3.0.2, but the FastAPI/pydantic schemas in it are OpenAPI 3.1."""
        return attr.evolve(super().openapi_spec, openapi="3.1.0")
