"""In-process HTTP tests of predictions under an experiment: variant serving, durable rows, outages, caching."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine

from aifx.cache import SharedState
from aifx.serving.ab_tests import ABTests
from experiments import ExperimentStore, assign_variant

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
UNREACHABLE_DB = "postgresql+psycopg://postgres@127.0.0.1:1/none"


def parts():
    from aifx.http.bootstrap import app

    return app.state.parts


def body(candle_json, user: str | None = None, stop: int = 3000, **extra) -> dict:
    out = {**PAIR, "data": candle_json(stop, 80), **extra}
    if user is not None:
        out["user_id"] = user
    return out


@pytest.fixture
def database_down(client) -> Iterator[Callable[[], None]]:
    """The service's store gets connection errors (as when PostgreSQL is down); yields restore()."""
    store = parts().ab.store
    healthy, broken = store._engine, create_engine(UNREACHABLE_DB, connect_args={"connect_timeout": 2})
    store._engine = broken

    def restore() -> None:
        store._engine = healthy
        broken.dispose()

    yield restore
    restore()


def counts(client, eid: str) -> dict[str, int]:
    variants = client.get(f"/reversal/experiments/{eid}/metrics").json()["data"]["variants"]
    return {v: variants[v]["metrics"]["count"] for v in ("A", "B")}


def test_the_assigned_variant_serves_and_is_sticky(client, candle_json, experiment):
    eid = experiment["experiment_id"]
    seen: dict[str, str] = {}
    for i in range(24):
        user = f"user-{i % 8}"
        r = client.post("/reversal/predict", json=body(candle_json, user, stop=3000 + 5 * i))
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["experiment_id"] == eid and data["variant"] == assign_variant(experiment["salt"], user, 0.5)
        assert data["model_version"] == {"A": "v3.0", "B": "v3.1"}[data["variant"]]
        assert seen.setdefault(user, data["variant"]) == data["variant"]
        uuid.UUID(data["prediction_id"])
    assert set(seen.values()) == {"A", "B"}  # both variants are exercised
    assert sum(counts(client, eid).values()) == 24


def test_user_id_spelling_userId_is_accepted(client, candle_json, experiment):
    payload = {**body(candle_json), "userId": "camel-user"}
    data = client.post("/reversal/predict", json=payload).json()["data"]
    assert data["experiment_id"] == experiment["experiment_id"]
    assert data["variant"] == assign_variant(experiment["salt"], "camel-user", 0.5)


def test_the_row_is_committed_when_the_response_arrives(client, candle_json, experiment):
    other = ExperimentStore(parts().ab.store.url)  # its own connections, like another worker
    try:
        for i in range(5):
            data = client.post("/reversal/predict", json=body(candle_json, f"durable-{i}")).json()["data"]
            row = other.get_prediction(data["prediction_id"])
            assert (row["experiment_id"], row["variant"], row["model_version"]) == (
                experiment["experiment_id"],
                data["variant"],
                data["model_version"],
            )
            assert (row["user_id"], row["signal"]) == (f"durable-{i}", data["signal"])
            assert row["confidence"] == pytest.approx(data["confidence"])
            assert row["stage1_prob"] == pytest.approx(data["stage1_prob"])
    finally:
        other.close()


def test_explicit_version_wins_and_is_not_counted(client, candle_json, experiment):
    before = counts(client, experiment["experiment_id"])
    for version in ("v3.0", "v3.1", "v2.9"):
        data = client.post("/reversal/predict", json=body(candle_json, "explicit-user", version=version)).json()["data"]
        assert data["model_version"] == version
        assert not {"prediction_id", "experiment_id", "variant"} & set(data)
    assert counts(client, experiment["experiment_id"]) == before


def test_without_user_id_nothing_is_counted(client, candle_json, experiment):
    before = counts(client, experiment["experiment_id"])
    data = client.post("/reversal/predict", json=body(candle_json)).json()["data"]
    assert data["model_version"] == "v3.1" and "prediction_id" not in data
    assert client.post("/predict", json={**body(candle_json), "user_id": "legacy-user"}).status_code == 200
    assert counts(client, experiment["experiment_id"]) == before


def test_without_active_experiment_user_ids_are_plain_predictions(client, candle_json):
    data = client.post("/reversal/predict", json=body(candle_json, "nobody")).json()["data"]
    assert data["model_version"] == "v3.1" and "prediction_id" not in data


def test_batch_items_follow_the_same_rules(client, candle_json, experiment):
    eid = experiment["experiment_id"]
    items = [
        body(candle_json, "batch-0"),
        body(candle_json),
        body(candle_json, "batch-1", version="v2.9"),
        {**PAIR, "user_id": "batch-2"},  # invalid: no input
        {**body(candle_json, stop=3100), "userId": "batch-3"},
    ]
    r = client.post("/reversal/predict/batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = r.json()["data"]["results"]
    assert [x["success"] for x in results] == [True, True, True, False, True]
    for i, user in ((0, "batch-0"), (4, "batch-3")):
        data = results[i]["data"]
        assert data["experiment_id"] == eid and data["variant"] == assign_variant(experiment["salt"], user, 0.5)
        assert data["model_version"] == {"A": "v3.0", "B": "v3.1"}[data["variant"]]
    assert "prediction_id" not in results[1]["data"] and results[2]["data"]["model_version"] == "v2.9"
    assert "prediction_id" not in results[2]["data"]
    assert sum(counts(client, eid).values()) == 2


def test_a_variant_that_is_not_loaded_answers_503(client, candle_json, experiment, monkeypatch):
    from aifx.serving.registry import Availability

    registry = parts().registry
    only_b = Availability(loaded=["v3.1"], failed={"v3.0": "stage 2 model not loaded"}, stages_reachable=True)

    async def availability(refresh: bool = False) -> Availability:
        return only_b

    monkeypatch.setattr(registry, "availability", availability)
    user = next(u for u in (f"a-user-{i}" for i in range(100)) if assign_variant(experiment["salt"], u, 0.5) == "A")
    r = client.post("/reversal/predict", json=body(candle_json, user))
    assert r.status_code == 503
    error = r.json()["error"]
    assert f"experiment {experiment['experiment_id']} serves this user variant A" in error and "v3.0" in error


def test_winner_after_enough_outcomes(client, candle_json, experiment):
    eid = experiment["experiment_id"]
    candidates = [f"winner-{i}" for i in range(200)]
    users = {v: [u for u in candidates if assign_variant(experiment["salt"], u, 0.5) == v][:45] for v in ("A", "B")}
    items = [body(candle_json, u, stop=2500 + 3 * i) for i, u in enumerate(users["A"] + users["B"])]
    results = client.post("/reversal/predict/batch", json={"items": items}).json()["data"]["results"]
    served = [x["data"] for x in results]
    assert all(x["success"] for x in results) and all(d["experiment_id"] == eid for d in served)
    assert [d["variant"] for d in served] == ["A"] * 45 + ["B"] * 45
    for i, d in enumerate(served):
        pips = (10.0 if d["variant"] == "B" else -2.0) + (i % 45) % 7 - 3  # same noise in both variants
        r = client.post(f"/reversal/predictions/{d['prediction_id']}/outcome", json={"pips": pips})
        assert r.status_code == 201
    data = client.get(f"/reversal/experiments/{eid}/metrics").json()["data"]
    assert {v: data["variants"][v]["metrics"]["outcomes"]["count"] for v in ("A", "B")} == {"A": 45, "B": 45}
    comparison = data["comparison"]
    assert comparison["winner"] == "B" and comparison["pips"]["p_value"] < 0.05
    assert comparison["pips"]["diff"] == pytest.approx(12.0)
    assert comparison["hit_rate"]["rate_b"] == 1.0 and comparison["hit_rate"]["rate_a"] < 0.5


# ---- database outages ---------------------------------------------------------------------------


def test_database_down_fails_experiment_predictions_with_503_and_counts_nothing(
    client, candle_json, experiment, database_down
):
    r = client.post("/reversal/predict", json=body(candle_json, "outage-user"))
    assert r.status_code == 503
    assert r.json()["success"] is False and r.json()["data"] is None
    assert "experiment database is unavailable" in r.json()["error"] and "retry later" in r.json()["error"]
    plain = client.post("/reversal/predict", json=body(candle_json))
    assert plain.status_code == 200 and "prediction_id" not in plain.json()["data"]
    items = [body(candle_json, "outage-batch"), body(candle_json)]
    results = client.post("/reversal/predict/batch", json={"items": items}).json()["data"]["results"]
    assert [x["success"] for x in results] == [False, True]
    assert results[0]["error"].startswith("items[0]: the experiment database is unavailable")
    r = client.get("/reversal/experiments")
    assert r.status_code == 503 and "experiment database is unavailable" in r.json()["error"]
    database_down()
    assert counts(client, experiment["experiment_id"]) == {"A": 0, "B": 0}


def test_database_down_without_experiment_keeps_serving(client, candle_json, database_down):
    p = parts()
    p.ab.active.put(None)
    p.ab.active.expire()  # force a (failing) read of the active experiment
    p.registry.active.expire()  # and of the active version
    for extra in ({}, {"user_id": "outage-plain"}):
        r = client.post("/reversal/predict", json=body(candle_json, **extra))
        assert r.status_code == 200, r.text
        assert r.json()["data"]["model_version"] == "v3.1" and "prediction_id" not in r.json()["data"]


# ---- the active-experiment cache ----------------------------------------------------------------


class CountingStore:
    """Counts active_experiment() reads (and can fail them)."""

    def __init__(self, experiment: dict | None) -> None:
        self.experiment = experiment
        self.reads = 0
        self.fail = False

    def active_experiment(self) -> dict | None:
        self.reads += 1
        if self.fail:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("SELECT", {}, Exception("connection refused"))
        return self.experiment


def ab_tests(store: CountingStore, ttl: float, clock=None) -> ABTests:
    """The predict path's A/B hook over a counting store (as bootstrap builds it)."""
    extra = {"clock": clock} if clock else {}
    active = SharedState("active experiment", store.active_experiment, ttl, timeout=1.0, **extra)
    return ABTests(store, active)  # type: ignore[arg-type]


EXPERIMENT = {
    "experiment_id": "cached",
    "salt": "cached",
    "traffic_split": 0.5,
    "variant_a": "v3.0",
    "variant_b": "v3.1",
}


def test_requests_without_user_id_never_read_the_database():
    store = CountingStore(EXPERIMENT)
    cache = ab_tests(store, ttl=0.0)
    assert asyncio.run(cache.assign(None, None)) is None
    assert asyncio.run(cache.assign("u1", "v3.0")) is None  # explicit version
    assert store.reads == 0


def test_the_active_experiment_is_read_at_most_once_per_ttl():
    store, now = CountingStore(EXPERIMENT), [100.0]
    cache = ab_tests(store, ttl=0.5, clock=lambda: now[0])

    async def many() -> list:
        out = [await cache.assign(f"u{i}", None) for i in range(50)]
        await cache.active.wait_idle()
        return out

    async def scenario() -> None:
        assert all(a is not None and a.experiment_id == "cached" for a in await many())
        assert store.reads == 1
        now[0] += 0.49
        await many()
        assert store.reads == 1
        now[0] += 0.02
        await many()
        assert store.reads == 2

    asyncio.run(scenario())


def test_the_last_known_experiment_is_kept_while_the_database_is_down():
    store, now = CountingStore(EXPERIMENT), [0.0]
    cache = ab_tests(store, ttl=0.5, clock=lambda: now[0]).active

    async def scenario() -> None:
        assert await cache.get() == EXPERIMENT
        store.fail, now[0] = True, 1.0
        assert await cache.get() == EXPERIMENT
        await cache.wait_idle()
        assert await cache.get() == EXPERIMENT and store.reads == 2  # failures are retried once per ttl

    asyncio.run(scenario())
