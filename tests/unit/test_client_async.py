"""AsyncAIFXClient: same envelope parsing, retries, fallback, timeout and disabled behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from aifx_client import AIFXRequestError, AIFXTimeout, AsyncAIFXClient, MLDisabled, RetryPolicy
from aifx_client.testing import FakeService, prediction_data

pytestmark = pytest.mark.unit

T = TypeVar("T")
URL = "http://aifx.test"
CANDLES = [{"timestamp": "2017-01-02T00:00:00Z", "open": 1.05, "high": 1.06, "low": 1.04, "close": 1.055}]
LEGACY = {"prediction": "long", "confidence": 0.7, "factors": {"stage1_prob": 0.8}}


def run(
    fake: FakeService, use: Callable[[AsyncAIFXClient], Awaitable[T]], **kwargs: object
) -> tuple[T, AsyncAIFXClient]:
    """Run one coroutine against the fake service; returns its result and the (closed) client."""
    kwargs.setdefault("retry", RetryPolicy(attempts=3, backoff=0))

    async def main() -> tuple[T, AsyncAIFXClient]:
        async with AsyncAIFXClient(URL, transport=fake.async_transport(), **kwargs) as client:  # type: ignore[arg-type]
            return await use(client), client

    return asyncio.run(main())


def test_predict_and_retries() -> None:
    fake = FakeService().on("POST", "/reversal/predict", FakeService.fail(502, "gw"), FakeService.ok(prediction_data()))
    p, client = run(fake, lambda c: c.predict("EUR/USD", data=CANDLES, user_id="u"))
    assert p.signal == "long" and p.source == "reversal" and client.stats.retries == 1
    assert fake.body()["user_id"] == "u"


def test_fallback_to_legacy() -> None:
    fake = FakeService().on("POST", "/predict", FakeService.ok(LEGACY))
    p, client = run(fake, lambda c: c.predict("EUR/USD", data=CANDLES))
    assert p.source == "legacy" and p.stage1_prob == 0.8 and client.stats.fallbacks == 1


def test_no_retry_on_4xx() -> None:
    fake = FakeService().on("GET", "/reversal/models/v9", FakeService.fail(404, "unknown model version 'v9'"))
    with pytest.raises(AIFXRequestError, match="unknown model version"):
        run(fake, lambda c: c.model_info("v9"))
    assert len(fake.requests) == 1


def test_timeout_is_clear() -> None:
    fake = FakeService().on("GET", "/health", httpx.ReadTimeout("slow"))
    with pytest.raises(AIFXTimeout, match=r"http://aifx.test/health did not answer within 0.5 s"):
        run(fake, lambda c: c.health(), timeout=0.5)


def test_disabled() -> None:
    fake = FakeService()
    with pytest.raises(MLDisabled):
        run(fake, lambda c: c.experiments(), enabled=False)
    assert fake.requests == []


def test_experiment_routes() -> None:
    exp = {"experiment_id": "e1", "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.2}
    fake = (
        FakeService()
        .on("POST", "/reversal/experiments", FakeService.ok(exp))
        .on("POST", "/reversal/experiments/e1/activate", FakeService.ok({**exp, "active": True}))
    )

    async def use(c: AsyncAIFXClient) -> bool | None:
        await c.create_experiment("e1", "E1", "v3.0", "v3.1", traffic_split=0.2)
        return (await c.activate_experiment("e1")).active

    assert run(fake, use)[0] is True
