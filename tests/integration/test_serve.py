"""Every route, load, and /metrics against a real `bentoml serve`."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import uuid

import bentoml
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration
TOKEN = "test-admin-token-0123456789abcdef"  # at least 32 characters
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


@pytest.fixture(scope="module")
def server(launch, tmp_path_factory):
    s = launch(tmp_path_factory.mktemp("serve"), AIFX_ADMIN_TOKEN=TOKEN)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    with bentoml.SyncHTTPClient(server.url, server_ready_timeout=60) as c:
        yield c


def envelope(r: httpx.Response, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    seed = {"success", "data", "error", "timestamp"}  # the seed's envelope; an error also names its request
    assert set(body) == (seed if status < 400 else seed | {"request_id"})
    assert body["success"] is (status < 400)
    if status >= 400:
        assert body["request_id"] == r.headers["x-request-id"]
    return body


def test_every_route(client, candle_json):
    health = client.request("GET", "/health").json()
    assert health["status"] == "healthy" and health["model_loaded"] and health["model_version"] == "v3.1"
    assert {"timestamp", "environment"} <= set(health)

    data = candle_json(4000, 80)
    body = envelope(client.request("POST", "/reversal/predict", json={**PAIR, "data": data, "userId": "u"}))
    assert body["data"]["model_version"] == "v3.1" and body["data"]["signal"] in ("long", "short", "hold")

    items = [{**PAIR, "data": data}, {"pair": "EUR/USD"}]
    results = envelope(client.request("POST", "/reversal/predict/batch", json={"items": items}))["data"]["results"]
    assert [r["success"] for r in results] == [True, False]

    cmp = envelope(client.request("POST", "/reversal/compare", json={**PAIR, "data": data}))["data"]
    assert set(cmp["predictions"]) == {"v3.1", "v3.0", "v2.9", "v3.2"} and "consensus" in cmp and "disagreement" in cmp

    models = envelope(client.request("GET", "/reversal/models"))["data"]
    assert models["active_version"] == "v3.1" and models["fallback_order"] == ["v3.1", "v3.0", "v2.9", "v3.2"]
    info = envelope(client.request("GET", "/reversal/models/v3.0"))["data"]
    assert info["version"] == "v3.0" and info["stages"]["stage2"]["loaded"]

    envelope(client.request("POST", "/reversal/models/v3.0/switch"), 401)
    bad = {"Authorization": "Bearer wrong"}
    envelope(client.request("POST", "/reversal/models/v3.0/switch", headers=bad), 403)
    ok = {"Authorization": f"Bearer {TOKEN}"}
    sw = envelope(client.request("POST", "/reversal/models/v3.0/switch", headers=ok))["data"]
    assert sw["active_version"] == "v3.0"
    envelope(client.request("POST", "/reversal/models/v3.1/switch", headers=ok))

    legacy = envelope(client.request("POST", "/predict", json={"data": data}))["data"]
    assert set(legacy) == {"prediction", "confidence", "factors"}

    envelope(client.request("POST", "/reversal/predict", json={**PAIR, "data": data[:5]}), 422)
    envelope(client.request("GET", "/reversal/models/v7"), 404)


def test_bentoml_routes(client):
    for path in ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/"):
        assert client.request("GET", path).status_code == 200, path
    spec = client.request("GET", "/docs.json").json()
    assert "/reversal/predict" in spec["paths"] and "/health" in spec["paths"]


def test_4000_requests_at_concurrency_32(server, candle_json):
    bodies = [json.dumps({**PAIR, "data": candle_json(1000 + 60 * k, 60)}).encode() for k in range(60)]
    codes: dict[int, int] = {}

    async def run() -> None:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as c:
            todo = iter(range(4000))

            async def worker() -> None:
                for i in todo:
                    r = await c.post(
                        "/reversal/predict",
                        content=bodies[i % len(bodies)],
                        headers={"content-type": "application/json"},
                    )
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1

            await asyncio.gather(*(worker() for _ in range(32)))

    asyncio.run(run())
    assert codes == {200: 4000}, codes


def _series(text: str) -> set[str]:
    return {line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)")
def test_metrics_clean_and_bounded(server, candle_json):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        data = candle_json(3000, 60)
        for _ in range(5):
            c.post("/reversal/predict", json={**PAIR, "data": data})
            c.post("/reversal/predict", json={**PAIR, "data": data, "version": "nope"})
            c.post("/reversal/predict", json={**PAIR, "data": data[:3]})
        c.get("/no/such/path")
        c.get("/reversal/models/nope")
        before = _series(c.get("/metrics").text)
        rng = np.random.default_rng(0)
        for i in range(1000):
            c.get(f"/{uuid.uuid4().hex}/{rng.integers(1e9)}")
            c.get(f"/reversal/models/v{uuid.uuid4().hex[:8]}")
            if i % 10 == 0:
                c.post(f"/reversal/models/v{uuid.uuid4().hex[:8]}/switch")
        text = c.get("/metrics").text
    after = _series(text)
    assert len(after - before) < 50, sorted(after - before)[:20]
    for name in (
        "aifx_predictions_total",
        "aifx_stage1_probability_bucket",
        "aifx_confidence_bucket",
        "aifx_errors_total",
        "aifx_active_version",
        "aifx_stage_call_failures_total",
    ):
        assert name in text, name
    assert 'aifx_errors_total{reason="unknown_version"}' in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check.stdout + check.stderr


def test_text_access_lines_keep_bentomls_format(server, candle_json):
    """The served access lines (aifx.http.access_line.LeanAccessLog) read as BentoML's own, date and all."""
    body = {**PAIR, "data": candle_json(4100, 80)}
    marker = f"/no/such/route/{uuid.uuid4().hex}"
    assert httpx.post(f"{server.url}/reversal/predict", json=body, timeout=30).status_code == 200
    assert httpx.get(f"{server.url}{marker}", timeout=10).status_code == 404
    date = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"
    head = rf"^{date} \[INFO\] \[entry_service:ReversalEngine:\d+\] 127\.0\.0\.1:\d+ "
    predict = re.compile(
        head + r"\(scheme=http,method=POST,path=/reversal/predict,type=application/json,length=\d+\) "
        r"\(status=200,type=application/json,length=\d+\) \d+\.\d{3}ms$"
    )
    missing = re.compile(head + r"\(scheme=http,method=GET,path=/\{unmatched\},type=,length=\) \(status=404,")
    lines: list[str] = []
    for _ in range(50):  # the line is written after the answer
        lines = server.log.read_text(errors="replace").splitlines()
        if any(predict.match(line) for line in lines) and any(missing.match(line) for line in lines):
            break
        time.sleep(0.1)
    assert any(predict.match(line) for line in lines), "\n".join(lines[-20:])
    assert any(missing.match(line) for line in lines), "\n".join(lines[-20:])
