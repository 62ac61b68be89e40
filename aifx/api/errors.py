"""API errors and the seed's response envelope."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from aifx.api import context


class ApiError(Exception):
    """An error the client gets as {"success": false, "error": message} with an HTTP status."""

    status = 400
    reason = "validation"

    def __init__(self, message: str, status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason


class BadCandles(ApiError):
    status, reason = 422, "bad_candles"


class UnknownVersion(ApiError):
    status, reason = 422, "unknown_version"


class VersionUnavailable(ApiError):
    status, reason = 503, "version_unavailable"


def unknown_version(version: str, configured: Sequence[str], field: str | None = None) -> UnknownVersion:
    """A version that is not configured: 404 when it is a path parameter, 422 when it is the body's `field`."""
    where = f"{field}: " if field else ""
    message = f"{where}unknown model version {version!r}; configured versions: {', '.join(configured)}"
    return UnknownVersion(message, status=422 if field else 404)


def version_unavailable(version: str, reason: str, loaded: Sequence[str], field: str | None = None) -> ApiError:
    """A configured version that does not serve now (a stage not loaded or not reachable): 503 wherever it is named."""
    where = f"{field}: " if field else ""
    return VersionUnavailable(
        f"{where}model version {version} is not available ({reason}); loaded versions: {', '.join(loaded) or 'none'}"
    )


class StageUnavailable(ApiError):
    status, reason = 503, "stage_unavailable"


class Unauthorized(ApiError):
    status, reason = 401, "unauthorized"


class Forbidden(ApiError):
    status, reason = 403, "unauthorized"  # same bounded metrics label as 401


class NotFound(ApiError):
    status, reason = 404, "not_found"


class UnsupportedMediaType(ApiError):
    status, reason = 415, "validation"


def error_id() -> str:
    """A short random id of one failure: the client's message names it, the server log line carries the detail."""
    return secrets.token_hex(4)


def with_error_id(message: str, eid: str) -> str:
    """A client message that tells what failed and what to do, plus the id to find the detail in the server log."""
    return f"{message} (error id {eid}; the server log has the details)"


class ErrorBody(BaseModel):
    """The seed's envelope of a failed request (OpenAPI documentation of every error status)."""

    success: bool = False
    data: None = None
    error: str
    timestamp: str
    request_id: str | None = Field(default=None, description="the request's X-Request-ID (also a response header)")


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("Body is not JSON or not an object"),
    401: _documented(
        "Admin route without `Authorization: Bearer <AIFX_ADMIN_TOKEN>` (outcome route: AIFX_OUTCOME_TOKEN or the "
        "admin token)"
    ),
    403: _documented("Wrong token, or an admin/outcome POST sent by a web page of another site"),
    404: _documented("Unknown model version, experiment or prediction in the path"),
    409: _documented("Conflict with the current state (e.g. another experiment is active)"),
    413: _documented("Request body larger than the limit"),
    415: _documented("Content-Type is not JSON (send `Content-Type: application/json`, or no Content-Type)"),
    422: _documented(
        "Invalid request (an unknown model version in the body, too few candles, ...): the message says what"
    ),
    503: _documented(
        "A stage model, model version or the experiment database is unavailable; retry later (the message names "
        "the component and an error id, never internals)"
    ),
}


def now_iso() -> str:
    """Current time, ISO-8601 with offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def envelope(data: Any = None, error: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The seed's envelope; an error names its request."""
    body = {"success": error is None, "data": data, "error": error, "timestamp": now_iso()}
    if error is not None:
        body["request_id"] = request_id or context.current()
    return body


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(envelope(data), status_code=status)


def fail(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(None, message), status_code=status, headers=headers)


def format_errors(errors: Sequence[Any], limit: int = 10) -> str:
    """Pydantic errors as one readable line: `data[3].high: Input should be greater than 0; ...`."""
    parts: list[str] = []
    for err in list(errors)[:limit]:
        where = ""
        for part in err.get("loc", ()):
            if part == "body" or _is_schema_label(part):
                continue
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if where.endswith("timestamp"):
            msg += " (ISO-8601 like 2017-01-02T00:00:00Z, or Unix seconds)"
        line = f"{where}: {msg}" if where else msg
        if line not in parts:  # a value that fits no member of a union fails each member alike
            parts.append(line)
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _is_schema_label(part: Any) -> bool:
    """Pydantic names union members in error locations (`dict[str,any]`, `function-after[...]`)."""
    return isinstance(part, str) and ("[" in part or "(" in part)


# -- request validation messages ----------------------------------------------------------------

_EXAMPLE = (
    '{"pair": "EUR/USD", "timeframe": "1h", "data": [{"timestamp": "2017-01-02T00:00:00Z", '
    '"open": 1.05, "high": 1.06, "low": 1.04, "close": 1.055}, ...]}'
)
_EXAMPLES = (  # path prefix -> body example for the bad-JSON / empty-body messages
    (
        "/reversal/experiments",
        '{"experiment_id": "v30_vs_v31", "name": "Swing Point vs Profitable Logic", '
        '"variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5}',
    ),
    ("/reversal/predictions/", '{"pips": 12.5}'),
)


def _example(path: str) -> str:
    """A request body example for the route at path."""
    return next((example for prefix, example in _EXAMPLES if path.startswith(prefix)), _EXAMPLE)


def validation_message(exc: RequestValidationError, path: str = "") -> tuple[str, int]:
    """A readable message and status for FastAPI's 422 (bad JSON and empty bodies are 400)."""
    example = _example(path)
    errors = list(exc.errors())
    kinds = {e.get("type") for e in errors}
    if "json_invalid" in kinds:
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON ({reason}); send a JSON object like {example}", 400
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return f"request body is empty; send a JSON object like {example}", 400
    not_object = ("model_attributes_type", "model_type")
    if any(e.get("type") in not_object and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return f"request body must be a JSON object (Content-Type: application/json) like {example}", 400
    return format_errors(errors), 422
