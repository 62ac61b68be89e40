"""The seed's envelope as HTTP answers: JSON responses, the documented error statuses and readable validation
messages (the envelope itself and the API errors: aifx.serving.errors)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from aifx.serving.errors import envelope, format_errors


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


_ENCODER = msgspec.json.Encoder()


class Answer(JSONResponse):
    """Starlette's JSONResponse written by msgspec (the same bytes for the service's answers, ~15x less CPU).

    What msgspec does not encode (numpy scalars, bool or None keys) is written by Starlette's json.dumps as
    before. One difference: a float that is not finite is written as null, where json.dumps raised (a 500).
    """

    def render(self, content: Any) -> bytes:
        try:
            return _ENCODER.encode(content)
        except (msgspec.EncodeError, TypeError):
            return super().render(content)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return Answer(envelope(data), status_code=status)


def fail(message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return Answer(envelope(None, message), status_code=status, headers=headers)


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
