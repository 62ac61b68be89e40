"""Input bounds behind the API (issue 11, findings 7 and 4): prices, times, features, database data errors,
the per-route body limits and the per-worker body budget."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import DataError, OperationalError

from aifx.candles import PRICE_RATIO, CandleDataError, validate_ohlc
from aifx.serving import inputs
from aifx.serving.errors import ApiError, BadCandles
from aifx.versions import default_spec

pytestmark = pytest.mark.unit
pytest_plugins = ["tests.conftest_pg"]


def bars(n: int = 60, base: float = 1.1) -> dict[str, np.ndarray]:
    close = base + 0.001 * np.sin(np.arange(n))
    ts = (np.datetime64("2017-01-02T00:00") + np.arange(n) * np.timedelta64(1, "h")).astype("datetime64[ns]")
    return {"timestamp": ts, "open_": close.copy(), "high": close + 0.002, "low": close - 0.002, "close": close}


# ---- prices against their neighbours ---------------------------------------------------------------


@pytest.mark.parametrize(
    "column,value,message",
    [
        ("high", 1e308, "row 30: high 1e+308 is more than 10 times away from the median close"),
        ("high", 11.5, "row 30: high 11.5 is more than 10 times"),
        ("low", 1e-300, "row 30: low 1e-300 is more than 10 times"),
        ("low", 0.1, "(allowed: 0.11"),
    ],
)
def test_a_bar_orders_of_magnitude_off_its_neighbours_is_rejected(column, value, message):
    b = bars()
    b[column][30] = value
    if column == "high":
        b["close"][30] = value  # as in the issue: high and close of 1e308, an ordinary-looking `hold` before
    with pytest.raises(CandleDataError, match=re.escape(message)):
        validate_ohlc(**b, max_ratio=PRICE_RATIO)


def test_large_but_plausible_moves_and_the_csv_loader_are_unaffected():
    b = bars()
    b["high"][30] = 1.1 * 9.9
    validate_ohlc(**b, max_ratio=PRICE_RATIO)  # under 10x the median close
    b["high"][30] = 1e308
    validate_ohlc(**b)  # without max_ratio (the training CSV loader: a long history may span more)


# ---- times -------------------------------------------------------------------------------------


def candles_json(first: str, n: int = 3) -> list[dict[str, Any]]:
    start = np.datetime64(first.rstrip("Z"), "s")
    return [
        {"timestamp": f"{start + np.timedelta64(i, 'h')}Z", "open": 1.1, "high": 1.2, "low": 1.0, "close": 1.1}
        for i in range(n)
    ]


@pytest.mark.parametrize("first", ["2262-04-11T22:00:00Z", "2300-01-01T00:00:00Z", "1969-12-31T22:00:00Z"])
def test_times_outside_1970_to_2100_are_rejected_before_they_wrap(first):
    with pytest.raises(BadCandles, match=r"^data\[\d\]\.timestamp: .* is outside the supported range 1970-01-01"):
        inputs.to_candles(candles_json(first))  # type: ignore[arg-type]


def test_times_at_the_edges_of_the_range_are_taken():
    got = inputs.to_candles(candles_json("2099-12-31T21:00:00Z"))  # type: ignore[arg-type]
    assert str(got.timestamp[-1]) == "2099-12-31T23:00:00.000000000"
    got = inputs.to_candles(candles_json("1970-01-01T00:00:00Z"))  # type: ignore[arg-type]
    assert got.timestamp[0].astype(np.int64) == 0


# ---- features --------------------------------------------------------------------------------------


def test_feature_rows_infinite_in_float32_never_reach_a_stage():
    """The schema bounds features to +-10,000; the rows are checked again after the float32 cast."""
    spec = default_spec("v3.1")
    rows = [[0.1] * 12 for _ in range(20)]
    rows[5][3] = 1e39  # finite as float64, inf as the models' float32
    with pytest.raises(BadCandles, match="finite numbers within float32 range"):
        inputs.feature_rows(rows, spec)
    rows[5][3] = 3e38
    assert inputs.feature_rows(rows, spec).shape == (20, 12)


# ---- database data errors ---------------------------------------------------------------------------


def _raise(exc: Exception) -> Any:
    def fn(*_args: Any) -> Any:
        raise exc

    return fn


def test_a_database_data_error_is_422_and_a_connection_error_503():
    from aifx.serving.ab_tests import in_thread

    data_error = DataError("INSERT ...", {}, ValueError("A string literal cannot contain NUL (0x00) characters."))
    with pytest.raises(ApiError) as caught:
        asyncio.run(in_thread(_raise(data_error)))
    assert caught.value.status == 422 and caught.value.reason == "validation"
    assert "rejected a value of this request as invalid data" in caught.value.message
    assert "NUL" not in caught.value.message
    down = OperationalError("SELECT 1", {}, ConnectionError("connection refused"))
    with pytest.raises(ApiError) as caught:
        asyncio.run(in_thread(_raise(down)))
    assert caught.value.status == 503


@pytest.mark.postgres
def test_nul_in_text_is_422_on_postgresql(pg_url):
    """PostgreSQL refuses NUL in text (psycopg DataError): a 422, not 503 "database unavailable"."""
    from aifx.serving.ab_tests import in_thread
    from experiments import ExperimentStore

    store = ExperimentStore(pg_url)
    try:
        with pytest.raises(ApiError) as caught:
            asyncio.run(in_thread(store.create_experiment, "nul-name", "na\x00me", None, "v3.0", "v3.1", 0.5))
        assert caught.value.status == 422, caught.value.message
    finally:
        store.close()


# ---- body limits and the body budget ----------------------------------------------------------------


def test_each_route_has_its_body_limit():
    from aifx.http.asgi import BodyLimits
    from aifx.settings import Settings

    limits = BodyLimits.of(Settings())
    assert limits.route("/reversal/predict/batch")[0] == 1_000_000
    for path in ("/reversal/predict", "/reversal/compare", "/predict"):
        assert limits.route(path)[0] == 262_144
    for path in ("/reversal/experiments", "/reversal/predictions/x/outcome", "/reversal/models/v3.1/switch", "/x"):
        assert limits.route(path)[0] == 16_384
    assert limits.budget == 2_000_000


def test_byte_budget_waits_in_order_and_gives_up_after_its_timeout():
    from aifx.http.asgi import ByteBudget

    async def scenario() -> list[str]:
        budget = ByteBudget(10)
        order: list[str] = []
        assert await budget.acquire(6, 1.0) == 6

        async def take(name: str, size: int, timeout: float) -> None:
            got = await budget.acquire(size, timeout)
            order.append(f"{name}:{got}")

        waiting = [asyncio.create_task(take("a", 6, 1.0)), asyncio.create_task(take("b", 2, 1.0))]
        late = asyncio.create_task(take("late", 9, 0.05))
        await asyncio.sleep(0.1)
        assert order == ["late:None"] and budget.used == 6  # b (2 bytes) would fit, but waits behind a: FIFO
        budget.release(6)
        await asyncio.gather(*waiting, late)
        assert budget.used == 8 and not budget._waiters
        assert await budget.acquire(50, 0.01) is None  # clamped to the capacity, still waits for the others
        budget.release(8)
        assert await budget.acquire(50, 0.01) == 10  # a body larger than the budget runs alone
        return order

    assert asyncio.run(scenario()) == ["late:None", "a:6", "b:2"]


def _app(active: list[int], peak: list[int], hold: float) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        await asyncio.sleep(hold)
        active[0] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def _request(guard: Any, size: int | None, path: str = "/reversal/predict") -> list[dict[str, Any]]:
    headers = [] if size is None else [(b"content-length", str(size).encode())]
    queue = [{"type": "http.request", "body": b"x" * (size or 0), "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await guard({"type": "http", "path": path, "headers": headers}, receive, send)
    return sent


def test_bodies_beyond_the_budget_wait_and_bodiless_requests_do_not():
    from aifx.http.asgi import BodyLimits, BodySizeLimit

    async def scenario() -> tuple[list[int], list[list[dict[str, Any]]]]:
        active, peak = [0], [0]
        guard = BodySizeLimit(_app(active, peak, 0.05), BodyLimits(100, 100, 100, 10))
        big = [asyncio.create_task(_request(guard, 6)) for _ in range(3)]
        await asyncio.sleep(0.01)
        health = await _request(guard, None, "/health")  # no body: not held behind the large ones
        assert peak[0] == 2, "the bodiless request ran beside the first large one"
        answers = await asyncio.gather(*big)
        return peak, [health, *answers]

    peak, answers = asyncio.run(scenario())
    assert peak == [2] and all(a[0]["status"] == 200 for a in answers)


def test_a_request_that_waits_too_long_for_the_budget_is_503(monkeypatch):
    from aifx.http import asgi

    monkeypatch.setattr(asgi, "BUDGET_WAIT_SECONDS", 0.05)

    async def scenario() -> list[list[dict[str, Any]]]:
        guard = asgi.BodySizeLimit(_app([0], [0], 0.3), asgi.BodyLimits(100, 100, 100, 10))
        return list(await asyncio.gather(_request(guard, 8), _request(guard, 8)))

    first, second = asyncio.run(scenario())
    assert first[0]["status"] == 200
    assert second[0]["status"] == 503 and (b"retry-after", b"1") in second[0]["headers"]
    assert "busy with other large request bodies" in json.loads(second[1]["body"])["error"]


def test_a_slow_body_is_408_and_holds_only_the_bytes_it_sent(monkeypatch):
    """Issue 29, item 3: the budget is taken as bytes arrive; a body that does not arrive in time is 408."""
    from aifx.http import asgi

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        budget = asgi.ByteBudget(10)
        guard = asgi.BodySizeLimit(_app([0], [0], 0.0), asgi.BodyLimits(100, 100, 100, 10, 0.3), budget=budget)
        stalled = asyncio.Event()

        async def slow_receive() -> dict[str, Any]:
            if not stalled.is_set():
                stalled.set()
                return {"type": "http.request", "body": b"{", "more_body": True}
            await asyncio.sleep(3600)  # the rest never comes
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        slow = asyncio.create_task(guard({"type": "http", "path": "/reversal/predict",
                                          "headers": [(b"content-length", b"100")]}, slow_receive, send))  # fmt: skip
        await stalled.wait()
        held = budget.used
        ordinary = await asyncio.wait_for(_request(guard, 8), 0.2)  # 8 of 10 bytes: not behind the slow one
        await slow
        return sent, ordinary, held

    sent, ordinary, held = asyncio.run(scenario())
    assert held == 1 and ordinary[0]["status"] == 200
    assert sent[0]["status"] == 408 and "AIFX_BODY_READ_SECONDS" in json.loads(sent[1]["body"])["error"]


def test_after_the_body_a_receive_waits_for_the_disconnect_without_a_deadline():
    from aifx.http import asgi

    async def scenario() -> list[dict[str, Any]]:
        messages = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await asyncio.sleep(0.5)  # longer than the read deadline
            return {"type": "http.disconnect"}

        async def app(scope: Any, rcv: Any, snd: Any) -> None:
            assert (await rcv())["type"] == "http.request"
            assert (await rcv())["type"] == "http.disconnect"  # not a 408
            await snd({"type": "http.response.start", "status": 204, "headers": []})

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        guard = asgi.BodySizeLimit(app, asgi.BodyLimits(100, 100, 100, 10, 0.1))
        await guard({"type": "http", "path": "/health", "headers": []}, receive, send)
        return sent

    assert [m["status"] for m in asyncio.run(scenario())] == [204]
