"""The request id: taken from `X-Request-ID` (or generated), in every log line and error body of the request."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

HEADER = "x-request-id"
_VALID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_CURRENT: ContextVar[str | None] = ContextVar("aifx_request_id", default=None)
_IDEMPOTENCY: ContextVar[str | None] = ContextVar("aifx_idempotency_key", default=None)
_PATH: ContextVar[str | None] = ContextVar("aifx_request_path", default=None)
IDEMPOTENCY_HEADER = b"idempotency-key"


def current() -> str | None:
    """The id of the request being served, if any."""
    return _CURRENT.get()


def current_path() -> str | None:
    """The raw path of the request being served (access logs name its route template too)."""
    return _PATH.get()


def idempotency_key() -> str | None:
    """The request's Idempotency-Key header, if any (validated where it is stored)."""
    return _IDEMPOTENCY.get()


def from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id when it is a safe token (no log injection), else a new one."""
    for name, value in headers:
        if name == HEADER.encode():
            text = value.decode("latin-1")
            if _VALID.fullmatch(text):
                return text
            break
    return os.urandom(16).hex()  # 32 hex digits like uuid4().hex, without building a UUID object


@contextmanager
def bound(rid: str, path: str | None) -> Iterator[None]:
    """Within the block, log lines (access lines included) name this request and path."""
    tokens = (_CURRENT.set(rid), _PATH.set(path))
    try:
        yield
    finally:
        _CURRENT.reset(tokens[0])
        _PATH.reset(tokens[1])


class RequestId:
    """ASGI middleware: sets the request id for the request's task and echoes it as a response header."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = from_headers(scope.get("headers", []))
        token = _CURRENT.set(rid)
        key = next((v.decode("latin-1") for n, v in scope.get("headers", []) if n == IDEMPOTENCY_HEADER), None)
        key_token = _IDEMPOTENCY.set(key)
        path_token = _PATH.set(scope.get("path"))
        header = (HEADER.encode(), rid.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _CURRENT.reset(token)
            _IDEMPOTENCY.reset(key_token)
            _PATH.reset(path_token)


class RequestLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose lines name the request they are about: `[request <id>] message`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        rid = _CURRENT.get()
        return (f"[request {rid}] {msg}" if rid else msg), kwargs


def get_logger(name: str) -> RequestLogger:
    """The module logger of the API layer."""
    return RequestLogger(logging.getLogger(name), {})
