"""What BentoML's access log costs a request: its middleware and line under the server's logging config.

Usage: python -m bench.access_log. A minimal ASGI app answers a predict-sized request 20,000 times bare and
20,000 times inside BentoML's AccessLogMiddleware and inside aifx.http.access_line.LeanAccessLog (request and
response type and length on), with BentoML's server logging config writing to /dev/null; prints what each adds
to the thread's CPU per request, three times.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bentoml._internal.log import SERVER_LOGGING_CONFIG
from bentoml._internal.server.http.access import AccessLogMiddleware

from aifx.http.access_line import LeanAccessLog

ASGI = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]
SCOPE = {
    "type": "http", "method": "POST", "path": "/reversal/predict", "scheme": "http", "client": ("127.0.0.1", 5555),
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"5000"), (b"host", b"127.0.0.1")],
}  # fmt: skip


async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """An answer of a predict's size and headers, at once."""
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"300")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"x" * 300})


async def receive() -> MutableMapping[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def send(message: MutableMapping[str, Any]) -> None:
    return None


async def per_request_us(target: ASGI, n: int = 20_000) -> float:
    start = time.thread_time()
    for _ in range(n):
        await target(dict(SCOPE), receive, send)
    return (time.thread_time() - start) / n * 1e6


async def main() -> None:
    options: dict[str, Any] = {
        f"has_{end}_content_{what}": True for end in ("request", "response") for what in ("length", "type")
    }
    bentoml_log, lean_log = AccessLogMiddleware(app, **options), LeanAccessLog(app, **options)
    for _ in range(3):
        bare, bentoml_us, lean_us = [await per_request_us(target) for target in (app, bentoml_log, lean_log)]
        print(f"bare {bare:.2f} µs; BentoML's access log costs {bentoml_us - bare:.2f} µs, "
              f"LeanAccessLog {lean_us - bare:.2f} µs")  # fmt: skip


if __name__ == "__main__":
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # BentoML's handler binds sys.stdout now: its lines go nowhere
    logging.config.dictConfig(SERVER_LOGGING_CONFIG)
    sys.stdout = out
    asyncio.run(main())
