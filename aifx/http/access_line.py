"""BentoML's access line for HTTP requests, written with a third less work (`LeanAppFactory` serves it).

BentoML 1.4's AccessLogMiddleware wraps both receive and send of every request, reads the clock at every message
and logs through `Logger.info`, which walks the stack to find its caller (~1 µs) for a line whose format names no
caller. `LeanAccessLog` gives the same line with the same arguments (`logs.access_fields` parses them) in one
wrapper: one clock read at the answer's last message, and the record made directly and handed to the logger's
`handle`, so its level, filters, handlers and formatter (text or JSON) apply as before; a record's constant part
(names, caller, thread, process) is made by `makeRecord` once and copied. Websocket lines stay
BentoML's own. tests/http/test_access_line.py holds the two middlewares to the same lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import MutableMapping
from timeit import default_timer
from typing import Any

from bentoml._internal.server.http.access import AccessLogMiddleware

FORMAT = "%s (%s) (%s) %.3fms"  # BentoML's: address (request) (response) latency
CONTENT_LENGTH, CONTENT_TYPE = b"content-length", b"content-type"


class LeanAccessLog(AccessLogMiddleware):
    """AccessLogMiddleware with the same HTTP lines: one send wrapper, one clock read, no caller lookup."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self._skip = tuple(self.skip_paths)
        self._request_headers = self.has_request_content_length or self.has_request_content_type
        self._response_headers = self.has_response_content_length or self.has_response_content_type
        self._records = Records(self.logger)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # websockets (connect and close lines) and lifespan: BentoML's own code
            await super().__call__(scope, receive, send)
            return
        start = default_timer()
        path = scope["path"]  # read now, as BentoML's: the app below may change the scope it is given
        if path.startswith(self._skip):
            await self.app(scope, receive, send)
            return
        status = 0
        response_headers: Any = ()

        async def logged_send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, response_headers
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                if self._response_headers:
                    response_headers = message.get("headers", ())
            elif kind == "http.response.body" and not message.get("more_body"):
                latency = max(default_timer() - start, 0) * 1000  # as BentoML's: before the last message is sent
                await send(message)
                self._line(scope, path, status, response_headers, latency)
                return
            await send(message)

        await self.app(scope, receive, logged_send)

    def _line(
        self, scope: MutableMapping[str, Any], path: str, status: int, response_headers: Any, latency: float
    ) -> None:
        """Hand the logger BentoML's line for one answered request."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else "_"
        request = f"scheme={scope['scheme']},method={scope.get('method', '')},path={path}"
        if self._request_headers:
            length, kind = _length_and_type(scope.get("headers", ()))
            request += f",type={kind}" if self.has_request_content_type else ""
            request += f",length={length}" if self.has_request_content_length else ""
        response = f"status={status}"
        if self._response_headers:
            length, kind = _length_and_type(response_headers)
            response += f",type={kind}" if self.has_response_content_type else ""
            response += f",length={length}" if self.has_response_content_length else ""
        logger.handle(self._records.make((address, request, response, latency)))


class Records:
    """Access records of one logger: what `makeRecord` gives, its constant part made once per thread."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._local = threading.local()  # one thread in a server worker (the event loop's); any number here

    def make(self, args: tuple[Any, ...]) -> logging.LogRecord:
        """A record of BentoML's access line with these arguments, now (LogRecord.__init__'s time fields)."""
        try:
            constant, start = self._local.state
        except AttributeError:  # this thread's first line: makeRecord's own, kept as the thread's pattern
            first = self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0, FORMAT, args, None, "make")
            # logging's start time from the record, not from logging's private _startTime
            self._local.state = (dict(first.__dict__), first.created - first.relativeCreated / 1000)
            return first
        record = logging.LogRecord.__new__(logging.LogRecord)
        now = time.time()
        fields = record.__dict__
        fields.update(constant)
        fields["args"] = args
        fields["created"] = now
        fields["msecs"] = int((now - int(now)) * 1000) + 0.0  # as LogRecord.__init__ (Python 3.11)
        fields["relativeCreated"] = (now - start) * 1000
        return record


def _length_and_type(headers: Any) -> tuple[str, str]:
    """The last content-length and content-type values of ASGI headers ('' when absent), as BentoML reads them."""
    length = kind = b""
    for key, value in headers:
        if key == CONTENT_LENGTH:
            length = value
        elif key == CONTENT_TYPE:
            kind = value
    return length.decode(), kind.decode()
