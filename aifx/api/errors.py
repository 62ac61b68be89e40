"""API errors and the seed's response envelope."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse


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
    status, reason = 400, "unknown_version"


class VersionUnavailable(ApiError):
    status, reason = 503, "version_unavailable"


class StageUnavailable(ApiError):
    status, reason = 503, "stage_unavailable"


class Unauthorized(ApiError):
    status, reason = 401, "unauthorized"


class NotFound(ApiError):
    status, reason = 404, "not_found"


def now_iso() -> str:
    """Current time, ISO-8601 with offset."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def envelope(data: Any = None, error: str | None = None) -> dict[str, Any]:
    """The seed's envelope."""
    return {"success": error is None, "data": data, "error": error, "timestamp": now_iso()}


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(envelope(data), status_code=status)


def fail(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(envelope(None, message), status_code=status, headers=headers)


def format_errors(errors: Sequence[Any], limit: int = 10) -> str:
    """Pydantic errors as one readable line: `data[3].high: Input should be greater than 0; ...`."""
    parts = []
    for err in list(errors)[:limit]:
        where = ""
        for part in err.get("loc", ()):
            if part == "body":
                continue
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if where.endswith("timestamp"):
            msg += " (ISO-8601 like 2017-01-02T00:00:00Z, or Unix seconds)"
        parts.append(f"{where}: {msg}" if where else msg)
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
