"""LeanAccessLog writes BentoML's access lines; SecondDates formats dates as logging.Formatter does."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bentoml._internal.server.http.access import AccessLogMiddleware
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx.http.access_line import LeanAccessLog
from aifx.http.logs import SecondDates, access_fields

OPTIONS = [
    {},
    {"has_request_content_length": True, "has_request_content_type": True},
    {f"has_{end}_content_{what}": True for end in ("request", "response") for what in ("length", "type")},
    {"has_response_content_type": True, "skip_paths": ["/health"]},
]
JSON = [(b"content-type", b"application/json"), (b"content-length", b"12")]
# (path, client, request headers, status, response headers, answer in two parts)
REQUESTS = [
    ("/reversal/predict", ("127.0.0.1", 5555), JSON, 200, JSON, False),
    ("/reversal/models/{version}", ("10.0.0.7", 80), [], 404, [(b"content-type", b"text/plain")], True),
    ("/health", None, JSON, 200, [], False),
    ("/b", None, [(b"content-length", b"0"), (b"content-length", b"3")], 500, JSON, True),
]


class Lines(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _captured(name: str, level: int = logging.INFO) -> Iterator[tuple[logging.Logger, Lines]]:
    """A logger at this level whose records a Lines handler keeps, while the block runs."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    handler = Lines()
    logger.addHandler(handler)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


def _lean(app: Any, logger: logging.Logger, **options: Any) -> LeanAccessLog:
    """LeanAccessLog over the app, writing to this logger."""
    middleware = LeanAccessLog(app, **options)
    middleware.logger = middleware._records.logger = logger
    return middleware


def _app(status: int, headers: list[tuple[bytes, bytes]], parts: bool) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["path"] = "/changed"  # an app below may change the scope: the line names the path it was asked
        await receive()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if parts:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.body", "body": b"y"})

    return app


async def _serve(middleware: Any, path: str, client: Any, headers: list[Any]) -> list[str]:
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    scope = {"type": "http", "scheme": "http", "method": "POST", "path": path, "headers": headers}
    await middleware(scope | ({"client": client} if client else {}), receive, send)
    return sent


def _lines(cls: type[Any], options: dict[str, Any]) -> tuple[list[Any], list[list[str]]]:
    with _captured("aifx_test_access") as (logger, handler):
        sent = []
        for path, client, headers, status, answer_headers, parts in REQUESTS:
            app = _app(status, answer_headers, parts)
            middleware = _lean(app, logger, **options) if cls is LeanAccessLog else cls(app, **options)
            middleware.logger = logger
            sent.append(asyncio.run(_serve(middleware, path, client, headers)))
    return [(r.name, r.levelno, r.msg, r.args[:3], access_fields(r)["status"]) for r in handler.records], sent


def test_lean_lines_equal_bentomls():
    for options in OPTIONS:
        bentoml_lines, bentoml_sent = _lines(AccessLogMiddleware, options)
        lean_lines, lean_sent = _lines(LeanAccessLog, options)
        assert lean_lines == bentoml_lines, options
        assert lean_sent == bentoml_sent  # every message still reaches the server
        skipped = "skip_paths" in options
        assert len(lean_lines) == len(REQUESTS) - skipped
    full = _lines(LeanAccessLog, OPTIONS[2])[0]
    assert full[0][3] == (
        "127.0.0.1:5555",
        "scheme=http,method=POST,path=/reversal/predict,type=application/json,length=12",
        "status=200,type=application/json,length=12",
    )
    assert full[3][3][0] == "_" and full[3][3][1].endswith("type=,length=3")  # no client; the last header wins


def test_lean_records_are_makerecords_with_the_time_of_their_line():
    with _captured("aifx_test_records") as (logger, handler):
        middleware = _lean(_app(200, JSON, False), logger)
        for _ in range(3):
            before = time.time()
            asyncio.run(_serve(middleware, "/a", None, []))
            after = time.time()
            assert before <= handler.records[-1].created <= after
        other = threading.Thread(target=lambda: asyncio.run(_serve(middleware, "/a", None, [])), name="other-one")
        other.start()
        other.join()
    expected = logger.makeRecord(logger.name, logging.INFO, "f", 0, "%s", ("x",), None, "g").__dict__
    timed = {"created", "msecs", "relativeCreated", "args"}
    for record in handler.records:
        fields = {k: v for k, v in record.__dict__.items() if k not in ("message", "asctime")}  # set by formatting
        assert fields.keys() == expected.keys()
        assert record.msecs == int((record.created - int(record.created)) * 1000)
        started = record.created - record.relativeCreated / 1000
        assert abs(started - (expected["created"] - expected["relativeCreated"] / 1000)) < 1e-3
        same = {k for k in fields if k not in timed | {"pathname", "filename", "module", "lineno", "funcName", "msg"}}
        assert {k: fields[k] for k in same if k not in ("thread", "threadName")} == {
            k: expected[k] for k in same if k not in ("thread", "threadName")
        }
    assert [r.threadName for r in handler.records] == [threading.current_thread().name] * 3 + ["other-one"]


def test_threads_logging_at_once_each_name_their_own():
    with _captured("aifx_test_threads") as (logger, handler):
        middleware = _lean(_app(200, JSON, False), logger)
        start = threading.Barrier(4)

        def serve() -> None:
            start.wait()
            for _ in range(50):
                asyncio.run(_serve(middleware, f"/{threading.current_thread().name}", None, []))

        threads = [threading.Thread(target=serve, name=f"t{i}") for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(handler.records) == 200
    for record in handler.records:
        assert f"path=/{record.threadName}" in record.args[1], (record.threadName, record.args)
        assert record.thread == next(t.ident for t in threads if t.name == record.threadName)


def test_no_line_below_the_loggers_level():
    with _captured("aifx_test_quiet", logging.WARNING) as (logger, handler):
        middleware = _lean(_app(200, JSON, False), logger)
        assert asyncio.run(_serve(middleware, "/a", None, [])) == ["http.response.start", "http.response.body"]
    assert handler.records == []


def test_websockets_keep_bentomls_lines():
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = {"type": "websocket", "scheme": "ws", "path": "/ws", "headers": [], "client": ("1.2.3.4", 9)}
    with _captured("aifx_test_ws") as (logger, handler):
        asyncio.run(_lean(app, logger)(scope, receive, send))
    assert [r.getMessage() for r in handler.records] == [
        "1.2.3.4:9 (scheme=ws,path=/ws) - Client connected",
        "1.2.3.4:9 (scheme=ws,path=/ws) - Connection established",
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=4e9, allow_nan=False), min_size=1, max_size=30),
    st.sampled_from(["%Y-%m-%dT%H:%M:%S%z", "%H:%M:%S", None]),
    st.booleans(),
)
def test_second_dates_equal_loggings_formatter(times, datefmt, utc):
    plain = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt)
    if utc:
        plain.converter = time.gmtime
    cached = SecondDates.like(plain)
    for moment in sorted(times) + times:  # in order, then jumping back and forth across seconds
        record = logging.makeLogRecord({"msg": "m", "levelname": "INFO", "created": moment, "msecs": moment % 1 * 1000})
        assert cached.format(record) == plain.format(record)
    assert cached.converter is plain.converter and cached.datefmt == plain.datefmt
