"""BentoML's service app without the per-request work this service configures away.

BentoML 1.4 (pinned in requirements.lock) stacks its OpenTelemetry middleware on every request even when the
configured `excluded_urls` exclude every URL (service.py's NO_TRACING): it then only builds each request's URL
to find it excluded, ~2.5 % of a predict's CPU. Its request metrics middleware looks up four labelled series
per request by keyword (`.labels(**kw)` validates and sorts the names each time). `LeanAppFactory` leaves the
first out when it would exclude everything, and answers the second's series from a bounded cache: the same
series, names and values (tests/http/test_lean_app.py). Tracing configured in BENTOML_CONFIG keeps the
middleware. Its request timeout runs each request in a task of its own with a 30 s timer that is never
cancelled (a task, an event loop pass and a timer callback per request, ~4 % of a predict's CPU);
`InlineTimeout` keeps its rule (504 when no answer has started in time) with one timer stopped at the answer.
Its access log becomes `access_line.LeanAccessLog`: the same lines with a third less work.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from timeit import default_timer
from typing import Any

from _bentoml_impl.server.app import ServiceAppFactory
from bentoml._internal.container import BentoMLContainer
from bentoml._internal.context import server_context
from bentoml._internal.server.http.access import AccessLogMiddleware
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.middleware import Middleware
from starlette.responses import JSONResponse

from aifx.http.access_line import LeanAccessLog

MAX_SERIES = 4_096  # endpoints are route templates (route_labels.py) and statuses few: a bound, not a limit


def traces_nothing() -> bool:
    """Whether the configured tracing excludes every URL (the OpenTelemetry middleware would do nothing)."""
    excluded = BentoMLContainer.tracing_excluded_urls.get()
    return ".*" in list(getattr(excluded, "_excluded_urls", None) or ())


class LeanAppFactory(ServiceAppFactory):
    """ServiceAppFactory whose middlewares skip a tracer that traces nothing and cache metric series."""

    @property
    def middlewares(self) -> list[Middleware]:
        drop_tracing = traces_nothing()
        out = []
        for middleware in super().middlewares:
            if middleware.cls is OpenTelemetryMiddleware and drop_tracing:
                continue
            if middleware.cls is RunnerTrafficMetricsMiddleware:
                middleware = Middleware(CachedTrafficMetrics, *middleware.args, **middleware.kwargs)
            if middleware.cls is TimeoutMiddleware:
                middleware = Middleware(InlineTimeout, *middleware.args, **middleware.kwargs)
            if middleware.cls is AccessLogMiddleware:
                middleware = Middleware(LeanAccessLog, *middleware.args, **middleware.kwargs)
            out.append(middleware)
        return out


class InlineTimeout(TimeoutMiddleware):
    """BentoML's request timeout: a 504 when no answer has started within it; in the request's own task."""

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def started_send(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # as BentoML's: the timer only runs until the first message
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, started_send)
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own TimeoutError, as BentoML's task would raise it
            answer = JSONResponse({"error": f"Not able to process the request in {self.timeout} seconds"}, 504)
            await answer(scope, receive, send)


class CachedTrafficMetrics(RunnerTrafficMetricsMiddleware):
    """BentoML's request metrics (total, duration, in progress, last request time), series looked up once."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self._done: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._running: dict[str, Any] = {}
        self._last: Any = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":  # websockets and the rest: BentoML's own code
            await super().__call__(scope, receive, send)
            return
        if not self._is_setup:
            self._setup()
        endpoint = scope["path"]
        if not endpoint.startswith(tuple(self.skip_paths)):
            self._last_request().set_to_current_time()
        start = default_timer()
        status = 0

        async def wrapped_send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                total, duration = self._finished(endpoint, status)
                total.inc()
                duration.observe(max(default_timer() - start, 0))
            await send(message)

        with self._in_progress(endpoint).track_inprogress():
            await self.app(scope, receive, wrapped_send)

    def _names(self) -> dict[str, str | None]:
        return {
            "service_name": server_context.bento_name,
            "service_version": server_context.bento_version,
            "runner_name": server_context.service_name,
        }

    def _last_request(self) -> Any:
        if self._last is None:
            self._last = self.metrics_last_request_timestamp.labels(**self._names())
        return self._last

    def _in_progress(self, endpoint: str) -> Any:
        found = self._running.get(endpoint)
        if found is None:
            found = self.metrics_request_in_progress.labels(endpoint=endpoint, **self._names())
            if len(self._running) < MAX_SERIES:
                self._running[endpoint] = found
        return found

    def _finished(self, endpoint: str, status: int) -> tuple[Any, Any]:
        found = self._done.get((endpoint, status))
        if found is None:
            names = {"endpoint": endpoint, **self._names(), "http_response_code": status}
            found = (self.metrics_request_total.labels(**names), self.metrics_request_duration.labels(**names))
            if len(self._done) < MAX_SERIES:
                self._done[(endpoint, status)] = found
        return found
