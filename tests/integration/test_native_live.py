"""Issue 16 against real `bentoml serve`: BentoML's own clients call every native API, and another
Bento composes the engine with `bentoml.depends(ReversalEngine)` or reaches it by `bentoml.depends(url=...)`."""

from __future__ import annotations

import asyncio
import time
import uuid

import bentoml
import httpx
import pytest
from bentoml.exceptions import BentoMLException

from aifx.http.native import ROUTES

pytestmark = pytest.mark.integration

TOKEN = "native-live-admin-token-0123456789abcdef"
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


@pytest.fixture(scope="module")
def engine(launch, tmp_path_factory):
    """The engine served with an admin token."""
    server = launch(tmp_path_factory.mktemp("native-live"), AIFX_ADMIN_TOKEN=TOKEN)
    yield server
    server.stop()


def create_experiment(url: str) -> str:
    eid = f"native-{uuid.uuid4().hex[:8]}"
    spec = {"experiment_id": eid, "name": "native", "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{url}/reversal/experiments", json=spec, headers=auth).status_code == 201
    return eid


def test_schema_lists_the_native_apis_with_their_inputs(engine):
    routes = {r["name"]: r for r in httpx.get(f"{engine.url}/schema.json").json()["routes"]}
    assert {name: routes[name]["route"] for name in ROUTES} == ROUTES
    for name in ("predict", "predict_batch", "compare", "describe_model", "experiment_metrics", "switch_model"):
        assert routes[name]["input"]["properties"], name
    assert {"pair", "timeframe"} <= set(routes["predict"]["input"]["required"])
    assert {"data", "features", "version", "user_id"} <= set(routes["predict"]["input"]["properties"])


def test_sync_client_calls_every_native_api(engine, candle_json):
    eid = create_experiment(engine.url)
    body = {**PAIR, "data": candle_json(2_000, 64)}
    with bentoml.SyncHTTPClient(engine.url, timeout=30) as client:
        assert client.is_ready()
        one = client.predict(**body)
        rest = httpx.post(f"{engine.url}/reversal/predict", json=body).json()["data"]
        assert (one["signal"], one["stage1_prob"], one["model_version"]) == (
            rest["signal"], rest["stage1_prob"], rest["model_version"],
        )  # fmt: skip
        batch = client.predict_batch(items=[body, {**body, "version": "v3.0"}])
        assert [r["data"]["model_version"] for r in batch["results"]] == ["v3.1", "v3.0"]
        assert set(client.compare(**body)["predictions"]) == {"v3.1", "v3.0", "v2.9", "v3.2"}
        assert client.list_models()["active_version"] == "v3.1"
        assert client.describe_model(version="v3.0")["version"] == "v3.0"
        assert client.experiment_metrics(experiment_id=eid)["experiment_id"] == eid
        with pytest.raises(BentoMLException) as refused:
            client.switch_model(version="v3.0")  # no token
        assert refused.value.error_code == 401 and "AIFX_ADMIN_TOKEN" in str(refused.value)
        with pytest.raises(BentoMLException) as missing:
            client.describe_model(version="v9.9")
        assert missing.value.error_code == 404 and "v9.9" in str(missing.value)
    with bentoml.SyncHTTPClient(engine.url, token=TOKEN, timeout=30) as admin:
        assert admin.switch_model(version="v3.0") == {"active_version": "v3.0", "previous_version": "v3.1"}
        assert admin.switch_model(version="v3.1")["active_version"] == "v3.1"


def test_async_client_calls_every_native_api(engine, candle_json):
    eid = create_experiment(engine.url)
    body = {**PAIR, "data": candle_json(2_100, 64)}

    async def calls() -> list:
        async with bentoml.AsyncHTTPClient(engine.url, token=TOKEN, timeout=30) as client:
            assert await client.is_ready()
            many = await asyncio.gather(*(client.predict(**body) for _ in range(16)))
            return [
                many,
                await client.predict_batch(items=[body]),
                await client.compare(**body),
                await client.list_models(),
                await client.describe_model(version="v3.1"),
                await client.experiment_metrics(experiment_id=eid),
                await client.switch_model(version="v3.1"),
            ]

    many, batch, compared, models, described, metrics, switched = asyncio.run(calls())
    assert len({(p["signal"], p["stage1_prob"]) for p in many}) == 1
    assert batch["results"][0]["data"]["signal"] == many[0]["signal"]
    assert compared["predictions"]["v3.1"]["signal"] == many[0]["signal"]
    assert models["active_version"] == described["version"] == switched["active_version"] == "v3.1"
    assert metrics["experiment_id"] == eid


def test_native_limits_and_json_only_on_the_real_server(engine):
    big = '{"pair": "EUR/USD", "timeframe": "1h", "x": "' + "a" * 300_000 + '"}'
    r = httpx.post(f"{engine.url}{ROUTES['predict']}", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = httpx.post(f"{engine.url}{ROUTES['predict']}", content=b"pair=EUR", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = httpx.post(f"{engine.url}{ROUTES['predict']}", json={"pair": "EUR/USD", "data": []})
    assert r.status_code == 400 and "timeframe" in r.text
    r = httpx.post(f"{engine.url}{ROUTES['switch_model']}", json={"version": "v3.0"},
                   headers={"Authorization": "Bearer wrong"})  # fmt: skip
    assert r.status_code == 403 and "not AIFX_ADMIN_TOKEN" in r.json()["error"]


def test_another_bento_composes_the_engine_with_bentoml_depends(server_factory, candle_json):
    desk = server_factory("tests.integration.front_service:SignalDesk", from_source=True, wait=False)
    body = {**PAIR, "data": candle_json(2_200, 64)}
    deadline, last = time.monotonic() + 180, None
    with bentoml.SyncHTTPClient(desk.url, server_ready_timeout=180, timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                out = client.desk_signal(**body)
                break
            except BentoMLException as exc:  # the engine behind it is still loading its stages
                last = exc
                time.sleep(1)
        else:
            raise AssertionError(f"no answer through bentoml.depends: {last}\n{desk.log_tail()}")
    assert out["signal"] in ("long", "short", "hold") and 0.0 <= out["stage1_prob"] <= 1.0
    assert out["model_version"] == out["active_version"] == "v3.1"


def test_another_bento_reaches_a_running_engine_by_url(engine, server_factory, candle_json):
    """bentoml.depends(url=...): the other Bento imports nothing of the engine's and starts no engine of its own."""
    desk = server_factory("tests.integration.remote_desk:RemoteDesk", from_source=True, wait=False,
                          AIFX_ENGINE_URL=engine.url)  # fmt: skip
    body = {**PAIR, "data": candle_json(2_300, 64)}
    direct = httpx.post(f"{engine.url}{ROUTES['predict']}", json=body).json()
    with bentoml.SyncHTTPClient(desk.url, server_ready_timeout=120, timeout=30) as client:
        out = client.desk_signal(**body)
    assert (out["signal"], out["stage1_prob"], out["model_version"]) == (
        direct["signal"], direct["stage1_prob"], direct["model_version"],
    )  # fmt: skip
    assert out["active_version"] == out["model_version"] == "v3.1"
    assert "ReversalEngine" not in desk.log_tail()  # the desk serves no engine of its own
