"""The benchmark's ceiling server (bench/ceiling.py) answers as the service does for the same candles."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
STOPS = (400, 1200, 2500, 3600, 4100, 5000, 5600, 6100)  # bar windows across the file, in and after training


def ceiling_answers(bodies: list[dict]) -> list[httpx.Response]:
    """The bare ASGI app in-process (no lifespan: its models load on the first request, from the test store)."""
    from bench import ceiling

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=ceiling.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ceiling") as c:
            assert (await c.get("/health")).json() == {"status": "healthy"}
            bad = await c.post("/reversal/predict", content=b"{not json")
            assert bad.status_code == 400 and bad.headers["content-type"] == "text/plain"
            return [await c.post("/reversal/predict", json=b) for b in bodies]

    ceiling.models.cache_clear()
    try:
        return asyncio.run(run())
    finally:
        ceiling.models.cache_clear()


def test_ceiling_matches_the_service(client, candle_json, model_store, monkeypatch):
    monkeypatch.setenv("BENTOML_HOME", str(model_store.home))
    monkeypatch.setenv("AIFX_CEILING_VERSION", model_store.versions.split(",")[0])
    bodies = [{**PAIR, "data": candle_json(stop, 64)} for stop in STOPS]
    fired = 0
    for body, answer in zip(bodies, ceiling_answers(bodies), strict=True):
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert set(got) == {"success", "data", "error", "timestamp"} and got["success"] is True
        r = client.post("/reversal/predict", json={**body, "version": got["data"]["model_version"]})
        assert r.status_code == 200, r.text
        want = r.json()["data"]
        data = got["data"]
        assert (data["pair"], data["timeframe"], data["signal"]) == (want["pair"], want["timeframe"], want["signal"])
        assert data["stage1_prob"] == pytest.approx(want["stage1_prob"], abs=1e-6)
        assert data["confidence"] == pytest.approx(want["confidence"], abs=1e-6)
        if want["stage2_prob"] is None:
            assert data["stage2_prob"] is None
        else:
            fired += 1
            assert data["stage2_prob"] == pytest.approx(want["stage2_prob"], abs=1e-6)
    assert 0 < fired < len(STOPS), "the windows should cover both a hold and a fired Stage 1"
