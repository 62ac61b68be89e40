"""Test helpers: a scripted fake AIFX service on httpx.MockTransport (no network).

fake = FakeService()
fake.on("POST", "/reversal/predict", fake.ok(prediction_data()))
client = AIFXClient("http://aifx.test", transport=fake.transport())
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import httpx

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]
TIMESTAMP = "2025-10-16T10:30:00+08:00"


def envelope(data: Any = None, error: str | None = None) -> dict[str, Any]:
    """The service's envelope {success, data, error, timestamp}."""
    return {"success": error is None, "data": data, "error": error, "timestamp": TIMESTAMP}


def prediction_data(signal: str = "long", **extra: Any) -> dict[str, Any]:
    """The seed's prediction example (0.82 and 0.68 give long with 0.75)."""
    data = {
        "pair": "EUR/USD",
        "timeframe": "1h",
        "signal": signal,
        "confidence": 0.75,
        "stage1_prob": 0.82,
        "stage2_prob": 0.68,
        "model_version": "v3.1",
        "factors": {"reversal_detected": True, "direction": signal},
        "timestamp": "2025-10-16T10:30:00Z",
    }
    return {**data, **extra}


class FakeService:
    """Routes (method, path) to queued replies; the last reply of a route repeats. Records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], deque[Reply]] = defaultdict(deque)
        self.requests: list[httpx.Request] = []

    @staticmethod
    def ok(data: Any, status: int = 200) -> httpx.Response:
        """A success envelope."""
        return httpx.Response(status, json=envelope(data))

    @staticmethod
    def fail(status: int, message: str) -> httpx.Response:
        """An error envelope."""
        return httpx.Response(status, json=envelope(None, message))

    def on(self, method: str, path: str, *replies: Reply) -> FakeService:
        """Queue replies for a route (each request takes the next; the last one repeats)."""
        self.routes[(method.upper(), path)].extend(replies)
        return self

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        """The recorded requests to one route."""
        return [r for r in self.requests if r.method == method.upper() and r.url.path == path]

    def body(self, index: int = -1) -> Any:
        """The JSON body of a recorded request."""
        return json.loads(self.requests[index].content or b"null")

    def handle(self, request: httpx.Request) -> httpx.Response:
        """MockTransport handler: the next reply of the route, or BentoML's plain 404."""
        self.requests.append(request)
        queue = self.routes.get((request.method, request.url.path))
        if not queue:
            return httpx.Response(404, text="Not Found")
        reply = queue.popleft() if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, httpx.Response):
            return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)
        return reply(request)

    def transport(self) -> httpx.MockTransport:
        """A transport for AIFXClient(transport=...)."""
        return httpx.MockTransport(self.handle)

    def async_transport(self) -> httpx.MockTransport:
        """A transport for AsyncAIFXClient(transport=...) (MockTransport serves both)."""
        return httpx.MockTransport(self.handle)
