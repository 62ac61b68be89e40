"""aifx_client against a real `bentoml serve` (conftest's `live_url`, else a server from `launch`)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from aifx_client import (
    AIFXClient,
    AIFXConnectionError,
    AIFXRequestError,
    AIFXTimeout,
    AsyncAIFXClient,
    RetryPolicy,
)

pytestmark = pytest.mark.integration

PAIR = "EUR/USD"
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


@pytest.fixture(scope="module")
def aifx_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """conftest's `live_url` when it provides one, else a server of our own from its `launch` fixture."""
    try:
        return request.getfixturevalue("live_url")
    except pytest.FixtureLookupError:
        launch = request.getfixturevalue("launch")
    server = launch(tmp_path_factory.mktemp("aifx-live"))
    request.addfinalizer(server.stop)
    return server.url


@pytest.fixture(scope="module")
def admin_token(request: pytest.FixtureRequest) -> str | None:
    """The server's AIFX_ADMIN_TOKEN if conftest provides `live_admin_token`, else None (admin routes open)."""
    try:
        return request.getfixturevalue("live_admin_token")
    except pytest.FixtureLookupError:
        return None


@pytest.fixture
def client(aifx_url: str, admin_token: str | None) -> Iterator[AIFXClient]:
    with AIFXClient(aifx_url, enabled=True, admin_token=admin_token, timeout=30, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture(scope="module")
def loaded(aifx_url: str) -> list[str]:
    """The versions the live server has loaded, in fallback order."""
    with AIFXClient(aifx_url, enabled=True, timeout=30) as c:
        return c.health().loaded_versions


class FlakyTransport(httpx.BaseTransport):
    """Refuses the first `failures` connections, then passes requests to a real HTTP transport."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls <= self.failures:
            raise httpx.ConnectError("connection refused (simulated)", request=request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def closed_port_url() -> str:
    """A 127.0.0.1 URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_health_models_and_model_info(client: AIFXClient) -> None:
    health = client.health()
    assert health.ok and health.model_loaded and health.model_version in health.loaded_versions
    models = client.models()
    assert models.active_version == health.model_version
    assert [v.version for v in models.versions] == models.fallback_order
    info = client.model_info(models.active_version or "")
    assert info.loaded and info.active and info.min_candles and len(info.features) > 0


def test_predict_follows_the_seed_semantics(client: AIFXClient, candle_json) -> None:
    p = client.predict(PAIR, "1h", data=candle_json(4000, 80), user_id="live-user-1")
    assert p.source == "reversal" and p.pair == PAIR and p.timeframe == "1h"
    assert p.model_version == client.models().active_version and p.stage1_prob is not None
    if p.signal == "hold":
        assert p.stage2_prob is None and p.confidence == pytest.approx(1 - p.stage1_prob)
    elif p.stage2_prob is not None:
        expected = (p.stage1_prob + max(p.stage2_prob, 1 - p.stage2_prob)) / 2
        assert p.confidence == pytest.approx(expected) and (p.signal == "long") == (p.stage2_prob >= 0.5)
    assert client.stats.retries == 0 and client.stats.fallbacks == 0


def test_predict_batch_items_fail_on_their_own(client: AIFXClient, candle_json) -> None:
    good = {"pair": PAIR, "timeframe": "1h", "data": candle_json(4100, 80)}
    short = {"pair": PAIR, "timeframe": "1h", "data": candle_json(4100, 5)}
    items = client.predict_batch([good, short])
    assert [i.success for i in items] == [True, False]
    assert items[0].data is not None and items[1].error and "candles" in items[1].error


def test_compare_versions(client: AIFXClient, candle_json, loaded: list[str]) -> None:
    comparison = client.compare(PAIR, "1h", data=candle_json(4200, 80), versions=loaded)
    assert list(comparison.predictions) == loaded
    signals = {p.signal for p in comparison.predictions.values()}
    assert comparison.disagreement is (len(signals) > 1)
    assert comparison.consensus == (next(iter(signals)) if len(signals) == 1 else None)


def test_a_bad_request_is_not_retried_and_not_sent_to_the_legacy_route(client: AIFXClient, candle_json) -> None:
    with pytest.raises(AIFXRequestError) as info:
        client.predict(PAIR, "1h", data=candle_json(4000, 5))
    assert 400 <= info.value.status < 500 and "candles" in info.value.message
    assert client.stats.snapshot() == {"requests": 1, "retries": 0, "fallbacks": 0, "failures": 1, "reconnects": 0}


def test_fallback_to_legacy_predict_when_the_new_route_is_missing(
    aifx_url: str, client: AIFXClient, candle_json
) -> None:
    data = candle_json(4300, 80)
    direct = client.predict(PAIR, "1h", data=data)
    with AIFXClient(
        aifx_url, enabled=True, timeout=30, retry=FAST_RETRY, predict_path="/reversal/no-such-route"
    ) as old:
        legacy = old.predict(PAIR, "1h", data=data)
        assert old.stats.fallbacks == 1 and old.stats.retries == 0
    assert legacy.source == "legacy" and direct.source == "reversal"
    assert (legacy.signal, legacy.model_version) == (direct.signal, direct.model_version)
    assert legacy.confidence == pytest.approx(direct.confidence)
    assert legacy.stage1_prob == pytest.approx(direct.stage1_prob)


def test_retries_are_counted_and_the_call_recovers(aifx_url: str, candle_json) -> None:
    flaky = FlakyTransport(failures=2)
    with AIFXClient(aifx_url, enabled=True, timeout=30, retry=FAST_RETRY, transport=flaky) as c:
        p = c.predict(PAIR, "1h", data=candle_json(4000, 80))
        assert p.source == "reversal" and c.stats.retries == 2 and flaky.calls == 3


def test_retries_are_bounded_when_nothing_listens() -> None:
    url = closed_port_url()
    with AIFXClient(url, enabled=True, timeout=5, retry=FAST_RETRY) as c:
        with pytest.raises(AIFXConnectionError) as info:
            c.models()
        assert c.stats.requests == 3 and c.stats.retries == 2
    assert url in str(info.value) and "3 attempt(s)" in str(info.value)


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A 127.0.0.1 URL whose listener accepts connections (kernel backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_timeout_raises_a_clear_error(silent_url: str, candle_json) -> None:
    # A server that never answers: the service itself can answer a predict within 1 ms now.
    with AIFXClient(silent_url, enabled=True, timeout=0.05, retry=FAST_RETRY) as c:
        with pytest.raises(AIFXTimeout) as info:
            c.predict(PAIR, "1h", data=candle_json(4000, 80))
        assert c.stats.fallbacks == 0
    message = str(info.value)
    assert f"{silent_url}/reversal/predict" in message and "0.05 s" in message and info.value.seconds == 0.05


def test_async_client(aifx_url: str, candle_json) -> None:
    async def main() -> tuple[str, str]:
        async with AsyncAIFXClient(aifx_url, enabled=True, timeout=30) as c:
            health, p = await asyncio.gather(c.health(), c.predict(PAIR, "1h", data=candle_json(4000, 80)))
            return health.status, p.signal

    status, signal = asyncio.run(main())
    assert status in ("healthy", "degraded") and signal in ("long", "short", "hold")


def test_switch_version_and_back(client: AIFXClient, loaded: list[str]) -> None:
    if len(loaded) < 2:
        pytest.skip(f"needs two loaded versions, the server has {loaded}")
    before = client.models().active_version
    other = next(v for v in loaded if v != before)
    try:
        switched = client.switch_version(other)
        assert switched.active_version == other and switched.previous_version == before
    finally:
        client.switch_version(before or loaded[0])
    assert client.models().active_version == before


def test_experiment_lifecycle_with_outcomes(client: AIFXClient, candle_json, loaded: list[str]) -> None:
    if len(loaded) < 2:
        pytest.skip(f"needs two loaded versions, the server has {loaded}")
    exp_id = f"live-{uuid.uuid4().hex[:8]}"
    a, b = loaded[1], loaded[0]
    made = client.create_experiment(exp_id, "Live client test", a, b, traffic_split=0.5, description="aifx_client")
    assert (made.experiment_id, made.variant_a, made.variant_b, made.traffic_split) == (exp_id, a, b, 0.5)
    client.activate_experiment(exp_id)
    try:
        served = [client.predict(PAIR, "1h", data=candle_json(4000 + 7 * i, 80), user_id=f"u{i}") for i in range(12)]
        again = client.predict(PAIR, "1h", data=candle_json(4000, 80), user_id="u0")
        assert again.variant == served[0].variant
        for p in served:
            assert p.experiment_id == exp_id and p.variant in ("A", "B") and p.prediction_id
            assert p.model_version == (b if p.variant == "B" else a)
        for i, p in enumerate(served):
            outcome = client.record_outcome(p.prediction_id or "", float(i) - 5.5)
            assert outcome.prediction_id == p.prediction_id and outcome.pips == float(i) - 5.5
        assert exp_id in [e.experiment_id for e in client.experiments()]
        metrics = client.experiment_metrics(exp_id)
        counts = {v: metrics.variants[v].metrics.count for v in ("A", "B")}
        assert sum(counts.values()) == 13
        assert counts["B"] == sum(p.variant == "B" for p in [*served, again])
        assert sum(metrics.variants[v].metrics.outcomes["count"] for v in ("A", "B")) == 12
        assert metrics.winner is None  # 12 outcomes are below any minimum sample size
    finally:
        stopped = client.stop_experiment(exp_id)
    assert stopped.experiment_id == exp_id
    assert client.predict(PAIR, "1h", data=candle_json(4000, 80), user_id="u0").experiment_id is None
