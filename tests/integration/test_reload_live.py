"""Issue 14 acceptance against a real `bentoml serve`: v3.2 is imported into the store of a running service
(configured `AIFX_VERSIONS=v3.2,v3.1,v3.0`, started without it), an admin reload loads it in every stage and
entry worker, and predictions with `version: v3.2` are served, while a load of 8 concurrent predict requests
runs from before the import to after the reload with no failed request.

v3.2 travels as BentoML moves models between stores: `bentoml models export` from the session's store
(trained and converted by the real importer in tests/conftest.py), `bentoml models import` into the running
service's store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import BENTOML, copy_home

pytestmark = pytest.mark.integration

ADMIN = "reload-admin-token-0123456789abcdefghij"
CONCURRENCY = 8
PAUSE_S = 0.05  # between one stream's requests: 8 in flight at most, with CPU left for the import beside them
STAGE_MODELS = [f"aifx-v3.2-stage{stage}" for stage in (1, 2)]


class Load:
    """CONCURRENCY threads posting predictions (half with the active version, half naming v3.1) until stopped."""

    def __init__(self, url: str, body: dict) -> None:
        self.url, self.body = url, body
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CONCURRENCY)]

    def _run(self, i: int) -> None:
        body = self.body if i % 2 else {**self.body, "version": "v3.1"}
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/reversal/predict", json=body)
                    status, text = r.status_code, r.text[:300]
                    version = r.json()["data"]["model_version"] if status == 200 else ""
                except httpx.HTTPError as exc:
                    status, text, version = 0, repr(exc), ""
                with self._lock:
                    self.statuses[status] += 1
                    self.versions[version] += 1
                    if status != 200:
                        self.failures.append(f"{status}: {text}")
                self._stop.wait(PAUSE_S)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def bentoml_models(home: Path, *args: str) -> None:
    """`bentoml models ARGS` against the store in `home`."""
    env = {**os.environ, "BENTOML_HOME": str(home)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run([BENTOML, "models", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def exported(model_store, tmp_path) -> list[Path]:
    """v3.2's two stage models exported from the session's store as .bentomodel files."""
    files = [tmp_path / f"{name}.bentomodel" for name in STAGE_MODELS]
    for name, file in zip(STAGE_MODELS, files, strict=True):
        bentoml_models(model_store.home, "export", f"{name}:latest", str(file))
    return files


@pytest.fixture
def home(model_store, tmp_path) -> Path:
    """A private store with the session's models except v3.2 (the service starts without it)."""
    home = copy_home(model_store, tmp_path / "home")
    for name in STAGE_MODELS:
        shutil.rmtree(home / "models" / name)
    return home


def test_a_version_imported_while_serving_is_loaded_by_reload_with_no_failed_request(
    server_factory, home, exported, candle_json
):
    server = server_factory(BENTOML_HOME=str(home), AIFX_VERSIONS="v3.2,v3.1,v3.0", AIFX_ADMIN_TOKEN=ADMIN)
    body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(3300, 120)}
    admin = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        before = client.get("/reversal/models/v3.2").json()["data"]
        assert before["loaded"] is False and "not in the model store" in before["error"]
        r = client.post("/reversal/predict", json={**body, "version": "v3.2"})
        assert r.status_code == 503 and "v3.2" in r.json()["error"]  # as before reloads existed
        assert client.post("/reversal/models/reload").status_code == 401

        with Load(server.url, body) as load:
            started = time.monotonic()
            for file in exported:
                bentoml_models(home, "import", str(file))
            import_s = time.monotonic() - started
            r = client.post("/reversal/models/reload", headers=admin)
            assert r.status_code == 200, r.text
            answer = r.json()["data"]
            assert answer["added"] == ["v3.2"] and answer["loaded"] == ["v3.2", "v3.1", "v3.0"], answer
            assert answer["failed"] == {}
            # Every entry worker serves it now: new connections, so both workers answer some of these.
            for _ in range(12):
                r = httpx.post(f"{server.url}/reversal/predict", json={**body, "version": "v3.2"}, timeout=30)
                assert r.status_code == 200, r.text
                assert r.json()["data"]["model_version"] == "v3.2"
            time.sleep(1.0)  # the load goes on after the reload
        assert load.failures == [], (load.statuses, load.failures[:5])
        assert sum(load.statuses.values()) >= 50, load.statuses
        # Requests without a version follow the default (v3.2, first configured) once it serves.
        assert load.versions["v3.2"] > 0 and load.versions["v3.1"] > 0, load.versions

        compared = client.post("/reversal/compare", json=body).json()["data"]["predictions"]
        assert sorted(compared) == ["v3.0", "v3.1", "v3.2"]
        assert client.get("/reversal/models/v3.2").json()["data"]["domain"] == {
            "pairs": ["EUR/USD"],
            "timeframes": ["1h"],
        }
        health = client.get("/health").json()
        assert health["status"] == "healthy" and health["loaded_versions"] == ["v3.2", "v3.1", "v3.0"]
    print(f"import took {import_s:.1f} s; load: {dict(load.statuses)}")
