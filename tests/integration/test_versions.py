"""Version management under a real server: switch in every worker, restart, a broken version."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from aifx.versions import LITE_FILE, MODEL_FILE

pytestmark = pytest.mark.integration
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


def _versions_seen(url: str, body: dict, n: int = 40) -> list[str]:
    """model_version of n predictions, each on a new connection (spread over the workers)."""
    seen = []
    for _ in range(n):
        r = httpx.post(f"{url}/reversal/predict", json=body, headers={"Connection": "close"}, timeout=30)
        assert r.status_code == 200, r.text
        seen.append(r.json()["data"]["model_version"])
    return seen


def test_switch_reaches_every_worker_within_a_second_and_survives_restart(server_factory, tmp_path, candle_json):
    workdir = tmp_path / "state"
    server = server_factory(workdir=workdir)
    body = {**PAIR, "data": candle_json(3500, 60)}
    assert set(_versions_seen(server.url, body, 10)) == {"v3.1"}

    r = httpx.post(f"{server.url}/reversal/models/v3.0/switch", timeout=30)
    assert r.status_code == 200 and r.json()["data"]["active_version"] == "v3.0"
    switched = time.monotonic()
    time.sleep(max(0.0, 1.0 - (time.monotonic() - switched)))
    assert set(_versions_seen(server.url, body)) == {"v3.0"}
    assert httpx.get(f"{server.url}/health").json()["model_version"] == "v3.0"

    server.stop()
    again = server_factory(workdir=workdir)  # same state database
    models = httpx.get(f"{again.url}/reversal/models").json()["data"]
    assert models["active_version"] == "v3.0"
    assert set(_versions_seen(again.url, body, 10)) == {"v3.0"}


@pytest.fixture
def broken_home(model_store, tmp_path) -> Path:
    """A copy of the store whose v3.1 Stage 1 model files are corrupt."""
    home = tmp_path / "home"
    shutil.copytree(model_store.home / "models", home / "models")
    model_dir = next(p for p in (home / "models" / "aifx-v3.1-stage1").iterdir() if p.is_dir())
    (model_dir / MODEL_FILE).write_bytes(b"this is not a keras file")
    (model_dir / LITE_FILE).write_bytes(b"this is not a tflite file")
    return home


def test_broken_version_leaves_the_other_serving(server_factory, broken_home, candle_json):
    server = server_factory(BENTOML_HOME=str(broken_home))
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "degraded" and health["model_loaded"] is True
    assert health["model_version"] == "v3.0"  # next in the fallback order
    assert "v3.1" in health["failed_versions"] and "v3.1" not in health["loaded_versions"]

    body = {**PAIR, "data": candle_json(3500, 60)}
    assert set(_versions_seen(server.url, body, 5)) == {"v3.0"}
    r = httpx.post(f"{server.url}/reversal/predict", json={**body, "version": "v3.1"})
    assert r.status_code == 503 and "not available" in r.json()["error"]
    info = httpx.get(f"{server.url}/reversal/models/v3.1").json()["data"]
    assert info["loaded"] is False and "failed to load" in info["error"]
    assert "checksum mismatch" in info["error"]  # refused before the corrupt bytes reach LiteRT
    listing = httpx.get(f"{server.url}/reversal/models").json()["data"]  # the list says why, too
    broken = next(v for v in listing["versions"] if v["version"] == "v3.1")
    assert listing["active_version"] == "v3.0" and broken == info
    r = httpx.post(f"{server.url}/reversal/models/v3.1/switch")
    assert r.status_code == 503 and r.json()["success"] is False and "v3.1 is not available" in r.json()["error"]
