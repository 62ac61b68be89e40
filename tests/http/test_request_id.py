"""X-Request-ID: echoed or generated, in error bodies, on the stage calls and in the log lines of the request."""

from __future__ import annotations

import logging
import re

import pytest

from runners.stage import StageRunner

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


def test_an_id_is_generated_when_absent_and_echoed_when_given(client, candle_json):
    r = client.post("/reversal/predict", json={**PAIR, "data": candle_json(3000, 80)})
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    r = client.get("/health", headers={"X-Request-ID": "trade-42"})
    assert r.headers["x-request-id"] == "trade-42"


def test_an_unsafe_id_is_replaced(client):
    r = client.get("/health", headers={"X-Request-ID": "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_error_bodies_name_the_request(client):
    for path in ("/reversal/models/v9.9", "/no/such/route"):
        r = client.get(path, headers={"X-Request-ID": "err-7"})
        assert r.status_code == 404 and r.json()["request_id"] == "err-7" and r.headers["x-request-id"] == "err-7"
    r = client.post("/reversal/predict", content=b"x" * 1_100_000, headers={"X-Request-ID": "big-1"})
    assert r.status_code == 413 and r.json()["request_id"] == "big-1"


def test_the_stage_calls_carry_the_id(client, candle_json, monkeypatch):
    seen: list[list[str]] = []
    original = StageRunner.score

    def recording(self, windows):
        seen.append([w.request_id for w in windows])
        return original(self, windows)

    monkeypatch.setattr(StageRunner, "score", recording)
    body = {**PAIR, "data": candle_json(3000, 80), "version": "v2.9"}  # threshold 0: Stage 1 always fires
    r = client.post("/reversal/compare", json={**body, "versions": ["v3.1", "v3.0"]}, headers={"X-Request-ID": "cmp-1"})
    assert r.status_code == 200
    assert seen and all(ids and set(ids) == {"cmp-1"} for ids in seen)


def test_log_lines_about_a_failed_request_name_it(client, candle_json, monkeypatch, caplog):
    def broken(self, windows):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(StageRunner, "score", broken)
    with caplog.at_level(logging.WARNING, logger="bentoml.aifx"):
        r = client.post(
            "/reversal/predict", json={**PAIR, "data": candle_json(3000, 80)}, headers={"X-Request-ID": "boom-9"}
        )
    assert r.status_code == 503 and r.json()["request_id"] == "boom-9"
    lines = [rec.getMessage() for rec in caplog.records if rec.name.startswith("bentoml.aifx")]
    assert lines and all("boom-9" in line for line in lines), lines
