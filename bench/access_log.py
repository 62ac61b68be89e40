"""What BentoML's access log costs a request: its middleware and line under the server's logging config.

Usage: python -m bench.access_log. A minimal ASGI app answers a predict-sized request 20,000 times bare and
20,000 times inside BentoML's AccessLogMiddleware (BentoML's formatter) and 20,000 times inside
aifx.http.access_line.LeanAccessLog (with logs.SecondDates, as served), request and response type and length
on, with BentoML's server logging config writing to /dev/null; prints what each adds to the thread's CPU per
request, five rounds and the best of each.
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
from aifx.http.logs import SecondDates

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


def dates_once_a_second(on: bool) -> None:
    """BentoML's handler with the served formatter (logs.SecondDates, as `logs.configure` sets it) or its own."""
    for handler in logging.getLogger("bentoml").handlers:
        formatter = handler.formatter
        assert formatter is not None
        plain = logging.Formatter.__new__(logging.Formatter)
        plain.__dict__.update(formatter.__dict__)
        handler.setFormatter(SecondDates.like(plain) if on else plain)


async def main() -> None:
    options: dict[str, Any] = {
        f"has_{end}_content_{what}": True for end in ("request", "response") for what in ("length", "type")
    }
    bentoml_log, lean_log = AccessLogMiddleware(app, **options), LeanAccessLog(app, **options)
    rounds = []
    for _ in range(5):
        dates_once_a_second(False)
        bare, bentoml_us = await per_request_us(app), await per_request_us(bentoml_log)
        dates_once_a_second(True)
        rounds.append((bare, bentoml_us, await per_request_us(lean_log)))
        print(f"bare {bare:.2f} µs; BentoML's access log costs {bentoml_us - bare:.2f} µs, "
              f"LeanAccessLog with SecondDates {rounds[-1][2] - bare:.2f} µs")  # fmt: skip
    bare, bentoml_us, lean_us = (min(column) for column in zip(*rounds, strict=True))  # the least disturbed
    print(f"best of 5: bare {bare:.2f} µs, BentoML's {bentoml_us - bare:.2f} µs, ours {lean_us - bare:.2f} µs")


if __name__ == "__main__":
    out = sys.stdout
    sys.stdout = open(os.devnull, "w")  # BentoML's handler binds sys.stdout now: its lines go nowhere
    logging.config.dictConfig(SERVER_LOGGING_CONFIG)
    sys.stdout = out
    asyncio.run(main())
