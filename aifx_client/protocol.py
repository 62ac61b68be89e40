"""Reading responses, classifying failures and mapping legacy answers: shared by both clients."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import ValidationError

from aifx_client.calls import Call
from aifx_client.config import RetryPolicy
from aifx_client.errors import (
    AIFXConnectionError,
    AIFXError,
    AIFXHTTPError,
    AIFXRequestError,
    AIFXResponseError,
    AIFXServerError,
    AIFXTimeout,
)
from aifx_client.models import LegacyPrediction, Prediction, PredictRequest

# Failures where the request never reached the service: always safe to send again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
FALLBACK_STATUSES = frozenset({404, 405})
SIGNAL_ALIASES = {"long": "long", "buy": "long", "short": "short", "sell": "short", "hold": "hold", "neutral": "hold"}
_SNIPPET = 200
logger = logging.getLogger("aifx_client")


@dataclass(frozen=True)
class Answer:
    """The `data` of a successful response and the envelope's timestamp."""

    data: Any
    timestamp: str | None
    status: int


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def error_message(response: httpx.Response) -> str:
    """The envelope's `error`, FastAPI's `detail`, or the start of the body."""
    body = _json(response)
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key])
    text = response.text.strip()[:_SNIPPET]
    return text or response.reason_phrase or "no message"


def http_error(response: httpx.Response, url: str) -> AIFXHTTPError:
    """AIFXRequestError for a 4xx, AIFXServerError for a 5xx."""
    cls = AIFXServerError if response.status_code >= 500 else AIFXRequestError
    return cls(response.status_code, error_message(response), url)


def should_retry(response: httpx.Response, call: Call[Any]) -> bool:
    """Retry 5xx answers (unless the status carries the answer, like /health's 503)."""
    return response.status_code >= 500 and response.status_code not in call.answer_statuses


def read_answer(response: httpx.Response, call: Call[Any], url: str) -> Answer:
    """The answer of a final response, or the AIFXError it stands for."""
    status = response.status_code
    if status >= 400 and status not in call.answer_statuses:
        raise http_error(response, url)
    body = _json(response)
    if not isinstance(body, dict):
        snippet = response.text[:_SNIPPET]
        raise AIFXResponseError(url, f"HTTP {status} with a body that is not a JSON object: {snippet!r}")
    if not call.enveloped:
        return Answer(body, body.get("timestamp"), status)
    if "success" not in body:
        raise AIFXResponseError(url, "no `success` field: not the AIFX envelope {success, data, error, timestamp}")
    if not body["success"]:
        raise AIFXResponseError(url, f"HTTP {status} but success=false: {body.get('error')}")
    return Answer(body.get("data"), body.get("timestamp"), status)


def parse(call: Call[Any], answer: Answer, url: str) -> Any:
    """The call's typed result, or AIFXResponseError when the data has another shape."""
    try:
        return call.parse(answer.data)
    except (ValidationError, KeyError, TypeError) as exc:
        raise AIFXResponseError(url, f"data does not have the expected shape: {exc}") from exc


def transport_failure(exc: httpx.TransportError, url: str, seconds: float, attempts: int) -> AIFXError:
    """AIFXTimeout for any timeout, AIFXConnectionError for other transport errors."""
    if isinstance(exc, httpx.TimeoutException):
        return AIFXTimeout(url, seconds, attempts)
    return AIFXConnectionError(url, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, attempts)


def retryable_transport(exc: httpx.TransportError) -> bool:
    """Connection failures are retried; a read/write timeout is not (the service may still be working)."""
    return isinstance(exc, NOT_SENT) or isinstance(exc, httpx.RemoteProtocolError)


def backoff(
    policy: RetryPolicy, retry: int, response: httpx.Response | None, call: Call[Any], error: AIFXError
) -> float:
    """The wait before retry number `retry` (a Retry-After header is honoured up to max_backoff); logs it."""
    delay = policy.delay(retry)
    header = response.headers.get("retry-after", "").strip() if response is not None else ""
    if header.isdigit():
        delay = min(float(header), policy.max_backoff)
    logger.info("retry %d/%d of %s %s in %.2f s: %s", retry, policy.attempts - 1, call.method, call.path, delay, error)
    return delay


def may_fall_back(exc: AIFXError) -> bool:
    """The legacy /predict is tried when the new route is unreachable, missing (404/405) or failing (5xx)."""
    if isinstance(exc, AIFXTimeout):
        return False  # the caller's time budget is spent
    if isinstance(exc, AIFXHTTPError):
        return isinstance(exc, AIFXServerError) or exc.status in FALLBACK_STATUSES
    return isinstance(exc, AIFXConnectionError | AIFXResponseError)


def legacy_to_prediction(legacy: LegacyPrediction, req: PredictRequest, timestamp: str | None, url: str) -> Prediction:
    """Map the legacy {prediction, confidence, factors} into a Prediction with source="legacy"."""
    signal = SIGNAL_ALIASES.get(legacy.prediction.strip().lower())
    if signal is None:
        raise AIFXResponseError(url, f"legacy prediction {legacy.prediction!r} is not one of long, short, hold")
    factors = dict(legacy.factors)
    return Prediction.model_validate(
        {
            "pair": req.pair,
            "timeframe": req.timeframe,
            "signal": signal,
            "confidence": legacy.confidence,
            "stage1_prob": _number(factors.get("stage1_prob")),
            "stage2_prob": _number(factors.get("stage2_prob")),
            "model_version": factors.get("model_version"),
            "factors": factors,
            "timestamp": timestamp,
            "source": "legacy",
        }
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def headers(call: Call[Any], admin_token: str | None, outcome_token: str | None = None) -> dict[str, str]:
    """Per-call headers: the admin bearer token on admin routes, the outcome token (else the admin one) on outcomes."""
    token = admin_token if call.admin else (outcome_token or admin_token) if call.outcome else None
    out = {"Authorization": f"Bearer {token}"} if token else {}
    if call.idempotency_key:
        out["Idempotency-Key"] = call.idempotency_key
    return out


@dataclass(frozen=True)
class Step:
    """What one attempt produced: an answer, or an error and whether to try again."""

    answer: Answer | None = None
    error: AIFXError | None = None
    retry: bool = False


def judge(
    call: Call[Any], url: str, seconds: float, attempt: int, response: httpx.Response | None, exc: Exception | None
) -> Step:
    """Classify one attempt: a final answer, a retryable failure or a final failure."""
    if isinstance(exc, httpx.TransportError):
        return Step(error=transport_failure(exc, url, seconds, attempt), retry=retryable_transport(exc))
    assert response is not None
    if should_retry(response, call):
        return Step(error=http_error(response, url), retry=True)
    return Step(answer=read_answer(response, call, url))
