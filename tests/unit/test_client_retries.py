"""Retries: connection errors and 5xx are retried with bounded, jittered backoff and counted; 4xx never."""

from __future__ import annotations

import random

import httpx
import pytest

from aifx_client import (
    AIFXClient,
    AIFXConnectionError,
    AIFXRequestError,
    AIFXServerError,
    AIFXTimeout,
    RetryPolicy,
)
from aifx_client.testing import FakeService

pytestmark = pytest.mark.unit

URL = "http://aifx.test"
MODELS = {"active_version": "v3.1", "versions": []}
NO_WAIT = RetryPolicy(attempts=3, backoff=0)


def client_for(fake: FakeService, retry: RetryPolicy = NO_WAIT, **kwargs: object) -> AIFXClient:
    return AIFXClient(URL, transport=fake.transport(), retry=retry, **kwargs)  # type: ignore[arg-type]


def test_a_5xx_then_success_is_retried_and_counted() -> None:
    fake = FakeService().on(
        "GET",
        "/reversal/models",
        FakeService.fail(503, "stage 1 busy"),
        FakeService.fail(500, "x"),
        FakeService.ok(MODELS),
    )
    client = client_for(fake)
    assert client.models().active_version == "v3.1"
    assert client.stats.snapshot() == {"requests": 3, "retries": 2, "fallbacks": 0, "failures": 0, "reconnects": 0}


def test_retries_are_bounded_by_attempts() -> None:
    fake = FakeService().on("GET", "/reversal/models", FakeService.fail(503, "no model version is loaded"))
    client = client_for(fake, RetryPolicy(attempts=4, backoff=0))
    with pytest.raises(AIFXServerError) as info:
        client.models()
    assert info.value.status == 503 and info.value.message == "no model version is loaded"
    assert len(fake.requests) == 4 and client.stats.retries == 3 and client.stats.failures == 1


def test_connection_errors_are_retried_then_raised_clearly() -> None:
    fake = FakeService().on("GET", "/reversal/models", httpx.ConnectError("Connection refused"))
    client = client_for(fake)
    with pytest.raises(AIFXConnectionError) as info:
        client.models()
    assert "http://aifx.test/reversal/models" in str(info.value) and "3 attempt" in str(info.value)
    assert len(fake.requests) == 3 and client.stats.retries == 2


def test_a_connection_error_then_success_is_recovered() -> None:
    fake = FakeService().on("GET", "/reversal/models", httpx.ConnectError("refused"), FakeService.ok(MODELS))
    client = client_for(fake)
    assert client.models().active_version == "v3.1" and client.stats.retries == 1


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413, 422])
def test_4xx_is_never_retried(status: int) -> None:
    fake = FakeService().on("GET", "/reversal/models", FakeService.fail(status, f"nope {status}"))
    client = client_for(fake)
    with pytest.raises(AIFXRequestError) as info:
        client.models()
    assert info.value.status == status and info.value.message == f"nope {status}"
    assert len(fake.requests) == 1 and client.stats.retries == 0


def test_a_plain_text_error_body_is_used_as_the_message() -> None:
    fake = FakeService().on("GET", "/reversal/models", httpx.Response(401, text="Unauthorized"))
    with pytest.raises(AIFXRequestError, match="HTTP 401 from http://aifx.test/reversal/models: Unauthorized"):
        client_for(fake).models()


def test_a_read_timeout_raises_aifx_timeout_with_url_and_seconds_without_retry() -> None:
    fake = FakeService().on("GET", "/reversal/models", httpx.ReadTimeout("timed out"))
    client = client_for(fake, timeout=0.25)
    with pytest.raises(AIFXTimeout) as info:
        client.models()
    assert info.value.url == "http://aifx.test/reversal/models" and info.value.seconds == 0.25
    assert "did not answer within 0.25 s" in str(info.value) and isinstance(info.value, TimeoutError)
    assert len(fake.requests) == 1 and client.stats.retries == 0


def test_a_connect_timeout_is_retried_then_raises_aifx_timeout() -> None:
    fake = FakeService().on("GET", "/reversal/models", httpx.ConnectTimeout("connect timed out"))
    client = client_for(fake)
    with pytest.raises(AIFXTimeout, match="3 attempt"):
        client.models()
    assert client.stats.retries == 2


def test_backoff_sleeps_are_jittered_exponential_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("aifx_client.client.time.sleep", waits.append)
    fake = FakeService().on("GET", "/reversal/models", FakeService.fail(502, "bad gateway"))
    policy = RetryPolicy(attempts=6, backoff=0.1, max_backoff=0.3)
    with pytest.raises(AIFXServerError):
        client_for(fake, policy).models()
    ceilings = [0.1, 0.2, 0.3, 0.3, 0.3]
    assert len(waits) == 5 and all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))


def test_retry_after_is_honoured_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("aifx_client.client.time.sleep", waits.append)
    busy = httpx.Response(503, headers={"Retry-After": "1"}, json={"success": False, "error": "busy"})
    long_busy = httpx.Response(503, headers={"Retry-After": "120"}, json={"success": False, "error": "busy"})
    fake = FakeService().on("GET", "/reversal/models", busy, long_busy, FakeService.ok(MODELS))
    client_for(fake, RetryPolicy(attempts=3, backoff=0.01, max_backoff=5.0)).models()
    assert waits == [1.0, 5.0]


def test_retry_policy_delay_bounds() -> None:
    rng = random.Random(7)
    policy = RetryPolicy(attempts=10, backoff=0.5, max_backoff=4.0)
    delays = [policy.delay(n, rng) for n in range(1, 10) for _ in range(50)]
    assert max(delays) <= 4.0 and min(delays) >= 0.0 and len(set(delays)) > 100
    assert RetryPolicy(backoff=0.5, max_backoff=4.0, jitter=False).delay(3) == 2.0
    assert RetryPolicy(backoff=0.5, max_backoff=4.0, jitter=False).delay(9) == 4.0


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=-1)


PREDICTION = {
    "pair": "EUR/USD", "timeframe": "1h", "signal": "hold", "confidence": 0.6, "stage1_prob": 0.4,
    "stage2_prob": None, "model_version": "v3.1", "factors": {"reversal_detected": False, "direction": None},
    "timestamp": "2026-11-30T00:00:00+00:00",
}  # fmt: skip


def test_a_retried_prediction_sends_the_same_idempotency_key() -> None:
    fake = FakeService().on(
        "POST", "/reversal/predict", FakeService.fail(503, "database busy"), FakeService.ok(PREDICTION)
    )
    client = client_for(fake)
    features = [[0.0] * 12] * 20
    client.predict("EUR/USD", "1h", features=features, user_id="u1")
    client.predict("EUR/USD", "1h", features=features, user_id="u1")
    keys = [r.headers.get("idempotency-key") for r in fake.requests]
    assert len(keys) == 3 and keys[0] and keys[0] == keys[1]  # the retry: same key, counted once
    assert keys[2] and keys[2] != keys[0]  # a new call: a new key
