"""API errors and the seed's response envelope."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aifx.serving import context


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


def now_iso() -> str:
    """Current time, ISO-8601 with offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def envelope(data: Any = None, error: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The seed's envelope; an error names its request."""
    body = {"success": error is None, "data": data, "error": error, "timestamp": now_iso()}
    if error is not None:
        body["request_id"] = request_id or context.current()
    return body


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
