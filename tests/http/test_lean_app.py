"""The lean service app: no tracer that traces nothing, and BentoML's request metrics with cached series."""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.container import BentoMLContainer
from bentoml._internal.server.http.access import AccessLogMiddleware
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from aifx.http.access_line import LeanAccessLog
from aifx.http.lean_app import CachedTrafficMetrics, InlineTimeout, traces_nothing

# (path, status): repeated series, a skipped path, several statuses, a streamed answer.
REQUESTS = [("/a", 200), ("/a", 200), ("/a", 404), ("/b", 500), ("/health", 200), ("/b", 200), ("/a", 200)]


def _user_middleware(client: Any) -> list[Any]:
    app = client.app
    while not hasattr(app, "user_middleware"):  # TemplatedPaths wraps BentoML's Starlette app
        app = app.app
    return [m.cls for m in app.user_middleware]


def test_the_served_app_has_no_tracer_and_caches_metric_series(client):
    classes = _user_middleware(client)
    assert traces_nothing()  # service.py's NO_TRACING
    assert OpenTelemetryMiddleware not in classes
    assert CachedTrafficMetrics in classes and RunnerTrafficMetricsMiddleware not in classes
    assert InlineTimeout in classes and TimeoutMiddleware not in classes
    assert LeanAccessLog in classes and AccessLogMiddleware not in classes
    # The series still count what was served: a predict moves the request total of its route template.
    before = _samples("bentoml_service")
    body = {"pair": "EUR/USD", "timeframe": "1h", "features": [[0.0] * 12] * 64}
    client.post("/reversal/predict", json=body)
    after = _samples("bentoml_service")
    moved = {k for k in after if after[k] != before.get(k) and k[0].endswith("request_total")}
    assert any(dict(k[1])["endpoint"] == "/reversal/predict" for k in moved), moved


def test_cached_series_equal_bentomls_own(client):
    """The same requests through BentoML's middleware and the cached one give the same series and counts."""
    del client  # the service's server context and metrics client are set up
    results = {}
    for name, cls in (("aifx_test_orig", RunnerTrafficMetricsMiddleware), ("aifx_test_cached", CachedTrafficMetrics)):
        middleware = cls(_answer, namespace=name, skip_paths=["/health"])
        for path, status in REQUESTS:
            asyncio.run(_call(middleware, path, status))
        results[name] = {(k[0].removeprefix(name), k[1]): _timeless(k, v) for k, v in _samples(name).items()}
    orig, cached = results["aifx_test_orig"], results["aifx_test_cached"]
    assert orig == cached
    totals = {(dict(k[1])["endpoint"], dict(k[1])["http_response_code"]): v
              for k, v in orig.items() if k[0] == "_request_total" and v}  # fmt: skip
    assert totals == {("/a", "200"): 3.0, ("/a", "404"): 1.0, ("/b", "500"): 1.0, ("/b", "200"): 1.0,
                      ("/health", "200"): 1.0}, totals  # fmt: skip


def _timeless(key: tuple[str, tuple[tuple[str, str], ...]], value: float) -> float | None:
    """A sample's value where it does not depend on timing (durations' sums and buckets below +Inf, timestamps)."""
    name, labels = key
    if name.endswith(("_sum", "timestamp_seconds")) or (name.endswith("_bucket") and dict(labels)["le"] != "+Inf"):
        return None
    return value


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    status = int(scope["path_status"])
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"x", "more_body": True})
    await send({"type": "http.response.body", "body": b"y"})


async def _call(app: Any, path: str, status: int) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    await app({"type": "http", "path": path, "method": "GET", "headers": [], "path_status": status}, receive, send)


def _samples(prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    client = BentoMLContainer.metrics_client.get()
    out = {}
    for family in client.text_string_to_metric_families():
        for s in family.samples:
            if s.name.startswith(prefix):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# Apps that answer at once, answer too late, start in time and finish late, or raise TimeoutError themselves.
async def _fast(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _late(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(0.3)
    await _fast(scope, receive, send)


async def _started_then_slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(0.3)  # past the timeout, after the answer started: no 504
    await send({"type": "http.response.body", "body": b"late"})


async def _own_timeout(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise TimeoutError("the app's own")


async def _through(cls: type, app: Any) -> tuple[list[dict[str, Any]], str | None, int]:
    """The messages sent, the exception raised and the timers left on the loop by one request."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop = asyncio.get_running_loop()
    try:
        await cls(app, timeout=0.05)({"type": "http", "path": "/x", "method": "GET", "headers": []}, receive, send)
        raised = None
    except TimeoutError as exc:
        raised = str(exc)
    timers = sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]
    return sent, raised, timers


def test_inline_timeout_answers_as_bentomls_timeout_without_a_lasting_timer():
    for app in (_fast, _late, _started_then_slow):
        theirs = asyncio.run(_through(TimeoutMiddleware, app))
        ours = asyncio.run(_through(InlineTimeout, app))
        assert ours[:2] == theirs[:2], (app.__name__, ours, theirs)
        assert ours[2] == 0, app.__name__  # BentoML's leaves its timer for the whole timeout, every request
    late = asyncio.run(_through(InlineTimeout, _late))[0]
    assert late[0]["status"] == 504 and b"0.05 seconds" in late[1]["body"]


def test_an_apps_own_error_reaches_the_error_middleware_at_once():
    """BentoML's middleware held an exception raised before the answer until its timeout, then returned with
    nothing sent (the task's exception was never retrieved); this one lets it through as it happens."""
    assert asyncio.run(_through(TimeoutMiddleware, _own_timeout))[:2] == ([], None)
    assert asyncio.run(_through(InlineTimeout, _own_timeout))[:2] == ([], "the app's own")
