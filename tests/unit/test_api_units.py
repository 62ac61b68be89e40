"""Plain functions behind the API: settings, state, inputs, stage runners, ASGI helpers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aifx.cache import SharedState
from aifx.candles import Candles
from aifx.serving import inputs
from aifx.serving.errors import BadCandles, StageUnavailable, format_errors
from aifx.serving.predictor import Predictor
from aifx.serving.schemas import CandleIn, PredictRequest
from aifx.serving.window_cache import Scored, WindowCache, content_key
from aifx.serving.windows import Prepared
from aifx.settings import Settings, SettingsError
from aifx.versions import default_spec
from experiments import ExperimentStore
from runners.stage import ReversalDetector, Window

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
        PredictRequest.model_validate({"pair": "EUR/USD", "timeframe": "1h", "data": []})
    assert "send `data`" in format_errors(err.value.errors())
    stored = PredictRequest.model_validate({"pair": "EUR/USD", "timeframe": "1h"})  # from the stored candles
    assert stored.data is None and stored.features is None and stored.bar_time is None
    req = PredictRequest.model_validate({"pair": "EUR/USD", "timeframe": "1h", "features": [[1.0]], "userId": "u1"})
    assert req.user_id == "u1"


def test_route_templates_are_bounded():
    from fastapi import FastAPI
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    from aifx.http.route_labels import UNMATCHED, route_templates

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
    from aifx.http.asgi import BodySizeLimit

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


class _Model:
    """A stage model that answers each window's first value, and counts its calls."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.shapes.append(rows.shape)
        return rows[:, 0, 0].astype(np.float64)


def test_a_runner_scores_each_version_in_one_stacked_call_and_answers_in_window_order():
    runner = ReversalDetector.__new__(ReversalDetector)
    models = {"v3.1": _Model(), "v3.0": _Model()}
    runner.models = SimpleNamespace(models=models)
    shapes = {"v3.1": (20, 12), "v3.0": (20, 10)}
    versions = ["v3.1", "v3.0", "v3.1", "v3.1", "v3.0"]
    windows = [Window(v, np.full(shapes[v], float(i))) for i, v in enumerate(versions)]
    assert runner.detect(windows) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert models["v3.1"].shapes == [(3, 20, 12)] and models["v3.0"].shapes == [(2, 20, 10)]
    with pytest.raises(KeyError, match="v2.9"):
        runner.detect([Window("v2.9", np.zeros((20, 12)))])


def test_a_model_fault_is_a_503_with_an_error_id_and_no_exception_text():
    from aifx.serving import stages

    def broken(windows):
        raise RuntimeError("/srv/models/secret.tflite: bad magic")

    with pytest.raises(StageUnavailable) as caught:
        stages.run(broken, 1, [Window("v3.1", np.zeros((20, 12)), "rq-1")])
    assert caught.value.status == 503 and "secret" not in caught.value.message and "error id" in caught.value.message


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


_STAMP_CHARS = "0123456789-:TZ +/.\x00t"


@settings(max_examples=400, deadline=None)
@given(
    base=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2099, 12, 31)),
    edits=st.lists(st.tuples(st.integers(0, 19), st.sampled_from(_STAMP_CHARS)), max_size=3),
)
def test_the_vectorised_timestamp_path_accepts_only_what_the_per_value_path_accepts(base, edits):
    """Fixed-width text, mutated: the fast path gives the per-value reading or leaves the value to it
    (numpy alone would read `2017-10-03T17:00   Z` or NUL padding as a time that pydantic refuses)."""
    chars = list(f"{base:%Y-%m-%dT%H:%M:%S}Z")
    for i, c in edits:
        chars[i] = c
    stamp = "".join(chars)
    try:
        want: int | None = inputs._micros(0, stamp)
    except BadCandles:
        want = None
    fixed = inputs._fixed_width([stamp, stamp])
    if fixed is not None:
        try:
            got = fixed.astype("datetime64[us]").astype(np.int64).tolist()
        except ValueError:
            got = None  # numpy refuses it too: the per-value path answers
        if got is not None:
            assert got == [want, want], stamp
    try:
        served: int | None = int(inputs.epoch_micros([stamp])[0])
    except BadCandles:
        served = None
    assert served == want, stamp


def test_batched_rows_equal_single_rows_and_a_bad_window_fails_alone():
    v31, v30 = default_spec("v3.1"), default_spec("v3.0")
    good = [inputs.to_candles(_candles(70, start=1.1 + k / 100)) for k in range(3)]
    broken = inputs.to_candles(_candles(70))
    close = broken.close.copy()
    close[-1] = np.nan  # not reachable through to_candles; stands for any window whose features are not finite
    broken = Candles(broken.timestamp, broken.open, broken.high, broken.low, close)
    tails = [(inputs.candle_tail(c, s), s) for c in good for s in (v31, v30)] + [(inputs.candle_tail(broken, v31), v31)]
    out = inputs.candle_rows_many(tails)
    for (tail, spec), rows in zip(tails[:-1], out[:-1], strict=True):
        assert np.array_equal(rows, inputs.candle_rows(tail, spec))
    assert isinstance(out[-1], BadCandles)
    assert out[-1].message == "data: cannot compute features for v3.1: features are not finite for these candles"
    with pytest.raises(BadCandles, match=out[-1].message):
        inputs.candle_rows(broken, v31)


class _Stages:
    """Fake stage calls that record when each starts and ends; Stage 2 may fail its first calls."""

    def __init__(self, p1: list[float], p2: list[float], stage2_failures: int = 0) -> None:
        self.p1, self.p2, self.failures = p1, p2, stage2_failures
        self.events: list[str] = []
        self.calls: list[int] = []
        self.cache = WindowCache(16)

    def detect(self, windows):
        self.calls.append(len(windows))
        self.events.append(f"detect {len(windows)}")
        return [self.p1[int(w.rows[0, 0])] for w in windows]

    def classify(self, windows):
        self.events.append(f"classify {len(windows)}")
        if self.failures:
            self.failures -= 1
            raise KeyError("stage 2 broke")
        return [self.p2[int(w.rows[0, 0])] for w in windows]

    def score(self, keys: bool = False) -> list:
        predictor = Predictor(SimpleNamespace(labels=None), self, self, SimpleNamespace())  # type: ignore[arg-type]
        predictor.cache = self.cache
        entry = SimpleNamespace(spec=SimpleNamespace(threshold=0.5), has_stage2=True)
        batch = [Prepared("v3.1", entry, np.full((20, 12), float(i))) for i in range(len(self.p1))]
        for i, p in enumerate(batch):
            if keys:  # as Predictor.cached_window does for candle windows
                p.key, p.scored = bytes([i]), self.cache.get(bytes([i]))
        return asyncio.run(predictor.score_each(batch, served=0))


def test_stage2_runs_only_where_stage1_fired_and_its_fault_fails_the_call():
    p1, p2 = [0.9, 0.2, 0.7], [0.8, 0.1, 0.3]
    stages = _Stages(p1, p2)
    assert [d.signal for d in stages.score()] == ["long", "hold", "short"]
    assert stages.events == ["detect 3", "classify 2"]  # one call per stage for the whole batch
    broken = _Stages([0.9], [0.8], stage2_failures=1)
    with pytest.raises(StageUnavailable):
        broken.score()


def _as_iso(candles: list[CandleIn]) -> list[CandleIn]:
    """The same candles with ISO-8601 text timestamps (the vectorised parse)."""
    return [{**c, "timestamp": f"{np.datetime64(int(c['timestamp']), 's')}Z"} for c in candles]


def test_candles_parsed_together_equal_each_alone_and_a_bad_set_keeps_its_own_message():
    good = [_as_iso(_candles(64, start=1.1 + k / 50)) for k in range(4)]
    high_below_low = _as_iso(_candles(64))
    high_below_low[7] = {**high_below_low[7], "high": high_below_low[7]["low"] - 1e-3}
    bad_time = _as_iso(_candles(64))
    bad_time[3] = {**bad_time[3], "timestamp": "2017-13-45T00:00:00Z"}
    too_early = _as_iso(_candles(64))
    too_early[0] = {**too_early[0], "timestamp": "1969-12-31T23:00:00Z"}
    with_volume = [{**c, "volume": 10.0} for c in _as_iso(_candles(64))]
    unix = _candles(64)
    shorter = _as_iso(_candles(60))
    sets = [*good, high_below_low, bad_time, too_early, with_volume, unix, shorter]
    many = inputs.to_candles_many(sets)
    for data, got in zip(sets, many, strict=True):
        try:
            alone: Candles | BadCandles = inputs.to_candles(data)
        except BadCandles as exc:
            alone = exc
        if isinstance(alone, BadCandles):
            assert isinstance(got, BadCandles) and got.message == alone.message
            continue
        assert isinstance(got, Candles)
        for field in ("timestamp", "open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(got, field), getattr(alone, field)), field
    assert [isinstance(x, BadCandles) for x in many] == [False] * 4 + [True] * 3 + [False] * 3
    # every set that fails alone fails in company too, each with its own message
    assert inputs.to_candles_many([high_below_low, bad_time])[1].message == many[5].message


def test_window_cache_keeps_the_most_recent_and_keys_by_every_value():
    cache = WindowCache(2)
    for k in (b"a", b"b", b"c"):
        cache.put(k, Scored(np.zeros(1)))
    assert cache.get(b"a") is None and cache.get(b"b") is not None and len(cache) == 2
    cache.put(b"d", Scored(np.zeros(1)))  # b was used last: c goes
    assert cache.get(b"c") is None and cache.get(b"b") is not None
    off = WindowCache(0)
    off.put(b"a", Scored(np.zeros(1)))
    assert len(off) == 0
    c = inputs.to_candles(_candles(60))
    key = content_key("v3.1,t1,t2", c)
    assert key == content_key("v3.1,t1,t2", inputs.to_candles(_candles(60)))  # same content, other arrays
    assert key != content_key("v3.1,t1,t3", c)  # other models
    for field in ("timestamp", "open", "high", "low", "close"):
        values = getattr(c, field).copy()
        values[7] = values[7] + (np.timedelta64(1, "ns") if field == "timestamp" else 1e-15)
        assert content_key("v3.1,t1,t2", replace(c, **{field: values})) != key, field


def test_scored_windows_skip_the_stages_and_invalid_outputs_are_not_kept():
    stages = _Stages([0.9, 0.2, float("nan")], [0.8, 0.1, 0.3])
    first = stages.score(keys=True)
    assert [type(d).__name__ for d in first] == ["Decision", "Decision", "StageUnavailable"]
    again = stages.score(keys=True)  # the same windows: only the invalid one goes out again
    assert again[:2] == first[:2]
    assert stages.events[2:] == ["detect 1"] and stages.calls[-1] == 1
