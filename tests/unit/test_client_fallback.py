"""Fallback to the legacy /predict (as the seed's tradingSignalService did) and when not to."""

from __future__ import annotations

import httpx
import pytest

from aifx_client import AIFXClient, AIFXConnectionError, AIFXRequestError, AIFXTimeout, RetryPolicy
from aifx_client.testing import FakeService, prediction_data

pytestmark = pytest.mark.unit

URL = "http://aifx.test"
CANDLES = [{"timestamp": "2017-01-02T00:00:00Z", "open": 1.05, "high": 1.06, "low": 1.04, "close": 1.055}]
LEGACY = {
    "prediction": "short",
    "confidence": 0.66,
    "factors": {"reversal_detected": True, "stage1_prob": 0.7, "stage2_prob": 0.38, "model_version": "v3.1"},
}


def client_for(fake: FakeService, **kwargs: object) -> AIFXClient:
    kwargs.setdefault("retry", RetryPolicy(attempts=3, backoff=0))
    return AIFXClient(URL, transport=fake.transport(), **kwargs)  # type: ignore[arg-type]


def legacy_fake(*primary: object) -> FakeService:
    fake = FakeService().on("POST", "/predict", FakeService.ok(LEGACY))
    if primary:
        fake.on("POST", "/reversal/predict", *primary)  # type: ignore[arg-type]
    return fake


def test_a_missing_new_route_falls_back_to_predict_at_once() -> None:
    fake = legacy_fake()  # /reversal/predict answers BentoML's plain 404
    client = client_for(fake)
    p = client.predict("EUR/USD", "4h", data=CANDLES, user_id="user123")
    assert p.source == "legacy" and p.signal == "short" and p.confidence == 0.66
    assert (p.pair, p.timeframe, p.stage1_prob, p.stage2_prob, p.model_version) == ("EUR/USD", "4h", 0.7, 0.38, "v3.1")
    assert p.factors["reversal_detected"] is True and p.timestamp is not None
    assert [r.url.path for r in fake.requests] == ["/reversal/predict", "/predict"]
    assert fake.body() == {"pair": "EUR/USD", "timeframe": "4h", "data": CANDLES, "user_id": "user123"}
    assert client.stats.fallbacks == 1 and client.stats.retries == 0


def test_a_failing_new_route_falls_back_after_its_retries() -> None:
    fake = legacy_fake(FakeService.fail(500, "internal error; see the server log"))
    client = client_for(fake)
    assert client.predict("EUR/USD", data=CANDLES).source == "legacy"
    assert len(fake.calls("POST", "/reversal/predict")) == 3 and len(fake.calls("POST", "/predict")) == 1
    assert client.stats.retries == 2 and client.stats.fallbacks == 1


def test_a_recovering_new_route_does_not_fall_back() -> None:
    fake = legacy_fake(FakeService.fail(503, "busy"), FakeService.ok(prediction_data()))
    client = client_for(fake)
    assert client.predict("EUR/USD", data=CANDLES).source == "reversal"
    assert client.stats.fallbacks == 0 and fake.calls("POST", "/predict") == []


def test_an_unreachable_new_route_falls_back_and_reports_both_failures() -> None:
    fake = FakeService().on("POST", "/reversal/predict", httpx.ConnectError("refused"))
    fake.on("POST", "/predict", httpx.ConnectError("refused"))
    client = client_for(fake)
    with pytest.raises(AIFXConnectionError) as info:
        client.predict("EUR/USD", data=CANDLES)
    assert info.value.url.endswith("/predict") and isinstance(info.value.__cause__, AIFXConnectionError)
    assert info.value.__cause__.url.endswith("/reversal/predict")
    assert client.stats.retries == 4 and client.stats.fallbacks == 1 and client.stats.failures == 2


@pytest.mark.parametrize("status", [400, 401, 409, 413, 422])
def test_a_bad_request_does_not_fall_back(status: int) -> None:
    fake = legacy_fake(FakeService.fail(status, "too few candles"))
    with pytest.raises(AIFXRequestError, match="too few candles"):
        client_for(fake).predict("EUR/USD", data=CANDLES)
    assert fake.calls("POST", "/predict") == []


def test_a_timeout_does_not_fall_back() -> None:
    fake = legacy_fake(httpx.ReadTimeout("slow"))
    with pytest.raises(AIFXTimeout):
        client_for(fake).predict("EUR/USD", data=CANDLES)
    assert fake.calls("POST", "/predict") == []


def test_fallback_can_be_switched_off() -> None:
    fake = legacy_fake(FakeService.fail(503, "down"))
    client = client_for(fake, fallback=False)
    with pytest.raises(Exception, match="down"):
        client.predict("EUR/USD", data=CANDLES)
    assert fake.calls("POST", "/predict") == [] and client.stats.fallbacks == 0


def test_predict_path_can_point_elsewhere() -> None:
    fake = FakeService().on("POST", "/v2/reversal/predict", FakeService.ok(prediction_data()))
    p = client_for(fake, predict_path="/v2/reversal/predict").predict("EUR/USD", data=CANDLES)
    assert p.source == "reversal" and fake.requests[0].url.path == "/v2/reversal/predict"


@pytest.mark.parametrize("word, signal", [("buy", "long"), ("SELL", "short"), ("neutral", "hold"), ("hold", "hold")])
def test_old_engine_words_map_to_signals(word: str, signal: str) -> None:
    fake = FakeService().on("POST", "/predict", FakeService.ok({"prediction": word, "confidence": 0.6, "factors": {}}))
    p = client_for(fake).predict("EUR/USD", data=CANDLES)
    assert p.signal == signal and p.stage1_prob is None and p.model_version is None


def test_an_unknown_legacy_word_is_a_clear_error() -> None:
    fake = FakeService().on(
        "POST", "/predict", FakeService.ok({"prediction": "moon", "confidence": 0.9, "factors": {}})
    )
    with pytest.raises(Exception, match="'moon' is not one of long, short, hold"):
        client_for(fake).predict("EUR/USD", data=CANDLES)
