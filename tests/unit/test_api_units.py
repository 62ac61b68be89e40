"""Plain functions behind the API: settings, state, inputs, stage retries, ASGI helpers."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
from bentoml.exceptions import ServiceUnavailable
from pydantic import ValidationError

from aifx.api import inputs
from aifx.api.errors import BadCandles, StageUnavailable, format_errors
from aifx.api.schemas import CandleIn, PredictRequest
from aifx.api.stage_client import StageClient
from aifx.cache import SharedState
from aifx.settings import Settings, SettingsError
from aifx.versions import default_spec
from aifx.wire import group_windows, ungroup
from experiments import ExperimentStore

pytestmark = pytest.mark.unit


def test_settings_defaults_and_versions(monkeypatch):
    monkeypatch.setenv("AIFX_VERSIONS", " v3.0 , v3.1 ")
    s = Settings()
    assert s.versions == ("v3.0", "v3.1") and s.default_version == "v3.0"
    assert s.database_url.startswith("sqlite:///")


def test_production_without_token_refuses_to_start(monkeypatch):
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("AIFX_ADMIN_TOKEN", raising=False)
    with pytest.raises((SettingsError, ValidationError), match="AIFX_ADMIN_TOKEN"):
        Settings()
    monkeypatch.setenv("AIFX_ADMIN_TOKEN", "s3cret-s3cret-s3cret-s3cret-s3cret")  # at least 32 characters
    monkeypatch.setenv("AIFX_DATABASE_URL", "postgresql+psycopg://aifx@db.example/aifx")  # production refuses SQLite
    assert Settings().is_production


def test_state_survives_reopen_and_cache_ttl(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}"
    store = ExperimentStore(url)
    assert store.get_active_version() is None
    store.set_active_version("v3.0")
    assert ExperimentStore(url).get_active_version() == "v3.0"
    now = [0.0]
    cached = SharedState("active version", ExperimentStore(url).get_active_version, 0.5, 1.0, clock=lambda: now[0])

    async def scenario() -> None:
        assert await cached.get() == "v3.0"
        store.set_active_version("v3.1")  # another worker switches
        now[0] = 0.4
        assert await cached.get() == "v3.0"
        now[0] = 0.6
        await cached.get()  # past the ttl: answered at once, refreshed in the background
        await cached.wait_idle()
        assert await cached.get() == "v3.1"
        cached.put("v3.0")  # this worker switched (the write itself goes to the store)
        assert await cached.get() == "v3.0"

    asyncio.run(scenario())


def _candles(n: int, start: float = 1.1) -> list[CandleIn]:
    rng = np.random.default_rng(1)
    close = start + np.cumsum(rng.normal(0, 1e-3, n))
    return [
        CandleIn(
            timestamp=1_500_000_000 + 3600 * i,
            open=c,
            high=c + 5e-4,
            low=c - 5e-4,
            close=c,
        )
        for i, c in enumerate(close)
    ]


def test_candles_to_window_and_errors():
    spec = default_spec("v3.1")
    rows = inputs.candle_rows(inputs.to_candles(_candles(spec.min_candles + 5)), spec)
    assert rows.shape == (spec.window, len(spec.features)) and np.isfinite(rows).all()
    with pytest.raises(BadCandles, match=f"need at least {spec.min_candles}"):
        inputs.candle_rows(inputs.to_candles(_candles(10)), spec)
    bad = _candles(60)
    bad[3] = {**bad[3], "high": bad[3]["low"] - 1e-3}
    with pytest.raises(BadCandles, match="row 3: high"):
        inputs.to_candles(bad)
    dup = _candles(60)
    dup[5] = {**dup[5], "timestamp": dup[4]["timestamp"]}
    with pytest.raises(BadCandles, match="duplicate timestamp"):
        inputs.to_candles(dup)


def test_feature_rows_shape_checks():
    spec = default_spec("v3.0")
    n = len(spec.features)
    rows = inputs.feature_rows([[0.1] * n] * 25, spec)
    assert rows.shape == (spec.window, n)
    with pytest.raises(BadCandles, match=f"needs {n}"):
        inputs.feature_rows([[0.1] * (n + 1)] * 25, spec)
    with pytest.raises(BadCandles, match="at least 20"):
        inputs.feature_rows([[0.1] * n] * 3, spec)


def test_request_validation_messages():
    with pytest.raises(ValidationError) as err:
        PredictRequest.model_validate({"pair": "EUR/USD", "timeframe": "1h"})
    assert "send `data`" in format_errors(err.value.errors())
    req = PredictRequest.model_validate({"pair": "EUR/USD", "timeframe": "1h", "features": [[1.0]], "userId": "u1"})
    assert req.user_id == "u1"


class _Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, windows):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return [0.5] * len(windows)


def test_stage_caller_retries_transient_failures():
    fn = _Flaky([aiohttp.ServerDisconnectedError(), ServiceUnavailable("overloaded")])
    caller = StageClient("stage1", "ReversalDetector", fn, attempts=3, timeout=1.0, backoff=0.0)
    assert asyncio.run(caller([1, 2])) == [0.5, 0.5]
    assert fn.calls == 3


def test_stage_caller_gives_up_with_a_message():
    fn = _Flaky([aiohttp.ClientConnectionError("refused")] * 5)
    caller = StageClient("stage1", "ReversalDetector", fn, attempts=2, timeout=1.0, backoff=0.0)
    with pytest.raises(StageUnavailable, match="no answer after 2 attempts"):
        asyncio.run(caller([1]))


def test_stage_caller_times_out_instead_of_hanging():
    async def hang(windows):
        await asyncio.sleep(60)

    caller = StageClient("stage2", "DirectionClassifier", hang, attempts=2, timeout=0.05, backoff=0.0)
    with pytest.raises(StageUnavailable, match="timed out"):
        asyncio.run(caller([1]))


def test_stage_caller_does_not_retry_real_errors():
    fn = _Flaky([KeyError("no model")])
    caller = StageClient("stage1", "ReversalDetector", fn, attempts=3, timeout=1.0, backoff=0.0)
    with pytest.raises(StageUnavailable, match="failed"):
        asyncio.run(caller([1]))
    assert fn.calls == 1


def test_route_templates_are_bounded():
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    from aifx.api.asgi import UNMATCHED, route_templates

    api = FastAPI()

    @api.get("/reversal/models/{version}")
    def one(version: str):
        return {}

    outer = Starlette(routes=[Route("/livez", lambda r: None), Mount("/", api)])
    tpl = route_templates(outer)
    assert tpl("/livez") == "/livez"
    assert tpl("/reversal/models/zzz") == "/reversal/models/{version}"
    assert {tpl(f"/random/{i}") for i in range(1000)} == {UNMATCHED}


def test_body_size_limit_rejects_by_header_and_stream():
    from aifx.api.asgi import BodySizeLimit

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run(headers, chunks):
        sent = []
        queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

        async def receive():
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await BodySizeLimit(app, max_bytes=10)({"type": "http", "headers": headers}, receive, send)
        return sent

    sent = asyncio.run(run([(b"content-length", b"11")], [b"x" * 11]))
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["success"] is False
    sent = asyncio.run(run([], [b"x" * 6, b"x" * 6]))
    assert sent[0]["status"] == 413 and len(sent) == 2
    sent = asyncio.run(run([(b"content-length", b"5")], [b"x" * 5]))
    assert sent[0]["status"] == 200


def test_coalescer_merges_calls_while_one_is_in_flight():
    from aifx.api.stage_client import Coalescer

    sizes = []

    async def call(windows):
        sizes.append(len(windows))
        await asyncio.sleep(0.01)
        return [float(w) for w in windows]

    async def run():
        c = Coalescer(call, max_inflight=1)
        return await asyncio.gather(*(c([i, i + 100]) for i in range(10)))

    results = asyncio.run(run())
    assert results == [[float(i), float(i + 100)] for i in range(10)]
    assert sizes[0] == 2 and sum(sizes) == 20 and len(sizes) == 2


def test_windows_travel_stacked_per_version_and_come_back_in_order():
    rng = np.random.default_rng(3)
    shapes = {"v3.1": (20, 12), "v3.0": (20, 10)}
    versions = ["v3.1", "v3.0", "v3.1", "v3.1", "v3.0"]
    windows = [(v, rng.normal(size=shapes[v])) for v in versions]
    batches, order = group_windows(windows)
    assert [b.version for b in batches] == ["v3.1", "v3.0"]
    assert [b.rows.shape for b in batches] == [(3, 20, 12), (2, 20, 10)]
    assert order == [0, 2, 3, 1, 4]
    np.testing.assert_array_equal(batches[0].rows[1], windows[2][1])
    # a stage answers in batch order; ungroup puts each probability back at its window
    answered = [float(i) for i in order]
    assert ungroup(answered, order) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_timestamps_vectorised_and_per_value_agree():
    canonical = ["2017-01-02T00:00:00Z", "2017-01-02T01:00:00Z", "2024-02-29T23:59:59Z"]
    want = [1483315200, 1483318800, 1709251199]
    assert (inputs.epoch_micros(canonical) // 1_000_000).tolist() == want
    # every other form goes value by value, as pydantic reads a datetime; naive means UTC
    others = ["2017-01-02T02:00:00+02:00", "2017-01-02 01:00:00", 1709251199, 1709251199000.0]
    assert (inputs.epoch_micros(others) // 1_000_000).tolist() == [*want[:2], want[2], want[2]]


@pytest.mark.parametrize("bad", ["yesterday", "2017-02-30T00:00:00Z", "2017-01-02T25:00:00Z"])
def test_a_bad_timestamp_names_its_row(bad):
    stamps = ["2017-01-02T00:00:00Z", "2017-01-02T01:00:00Z", bad]
    with pytest.raises(BadCandles, match=r"data\[2\]\.timestamp: .*ISO-8601"):
        inputs.epoch_micros(stamps)
