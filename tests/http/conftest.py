"""In-process client: the service's ASGI app, its stage runners in process."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import pytest

from aifx.serving.window_cache import WindowCache

LOCAL_PEER = ("127.0.0.1", 50000)


@pytest.fixture(scope="session")
def client(model_store, tmp_path_factory):
    """TestClient over ReversalEngine.to_asgi()."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIFX_VERSIONS", model_store.versions)
    mp.setenv("AIFX_DATABASE_URL", f"sqlite:///{tmp_path_factory.mktemp('state')}/state.db")
    from aifx.settings import get_settings

    get_settings.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient prefers httpx2, which we do not ship
        from starlette.testclient import TestClient
    from service import ReversalEngine

    try:
        # A local caller under a local name: without tokens the admin and outcome routes answer nothing else.
        with TestClient(ReversalEngine.to_asgi(), base_url="http://localhost", client=LOCAL_PEER) as c:
            yield c
    finally:
        mp.undo()
        get_settings.cache_clear()


@pytest.fixture
def experiment(client) -> Iterator[dict]:
    """An active experiment v3.0 (A) vs v3.1 (B) with split 0.5 (its data, salt included), stopped afterwards."""
    eid = f"exp-{uuid.uuid4().hex[:10]}"
    spec = {"experiment_id": eid, "name": "http tests", "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5}
    assert client.post("/reversal/experiments", json=spec).status_code == 201
    r = client.post(f"/reversal/experiments/{eid}/activate")
    assert r.status_code == 200, r.text
    yield r.json()["data"]
    active = client.get("/reversal/experiments").json()["data"]["active_experiment_id"]
    if active is not None:
        client.post(f"/reversal/experiments/{active}/stop")


@pytest.fixture(autouse=True)
def fresh_window_cache(request: pytest.FixtureRequest) -> None:
    """Each test starts with an empty window cache: a repeated candle body must reach the stages it breaks."""
    if "client" not in request.fixturenames:
        return
    from aifx.http.bootstrap import app

    parts = getattr(app.state, "parts", None)
    if parts is not None:
        parts.predictor.cache = WindowCache(parts.predictor.cache.size)
