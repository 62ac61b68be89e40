"""LOG_LEVEL and AIFX_LOG_FORMAT=json on a real `bentoml serve` (arbiter, entry and stage workers)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

pytestmark = pytest.mark.integration
# Printed by LiteRT's C++ code on stderr when an interpreter starts: no Python logger to format or silence.
NATIVE_LINES = ("Created TensorFlow Lite XNNPACK delegate",)


def native(line: str) -> bool:
    """A line of native code (documented in docs/deployment.md "Logs")."""
    return any(text in line for text in NATIVE_LINES)


def _traffic(url: str, candle_json, rid: str) -> None:
    body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(3000, 60)}
    assert httpx.post(f"{url}/reversal/predict", json=body, headers={"X-Request-ID": rid}, timeout=30).is_success
    assert httpx.get(f"{url}/reversal/models/v3.1", headers={"X-Request-ID": f"{rid}-m"}, timeout=10).is_success
    assert httpx.get(f"{url}/no/such/route", headers={"X-Request-ID": f"{rid}-404"}, timeout=10).status_code == 404
    time.sleep(1)  # the access line is written after the response


def test_log_level_warning_silences_info_lines(server_factory, candle_json):
    server = server_factory(LOG_LEVEL="warning")
    _traffic(server.url, candle_json, "quiet-1")
    server.stop()
    lines = server.log.read_text(errors="replace").splitlines()
    assert lines, "no output at all"
    info = [line for line in lines if ("[INFO]" in line or "INFO:" in line) and not native(line)]
    assert not info, "\n".join(info[:20])
    assert not any("quiet-1" in line for line in lines)  # neither access lines nor our info lines


def test_json_lines_parse_and_carry_the_request_id(server_factory, candle_json):
    server = server_factory(AIFX_LOG_FORMAT="json")
    _traffic(server.url, candle_json, "json-rid-1")
    server.stop()
    records, other = [], []
    for line in server.log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
        elif line.strip() and not native(line):
            other.append(line)
    assert not other, "\n".join(other[:20])
    for record in records:
        assert {"time", "level", "logger", "message", "request_id"} <= record.keys(), record
    assert any(r["logger"].startswith("bentoml.aifx") and r["level"] == "info" for r in records)

    access = {r["request_id"]: r for r in records if r["logger"] == "bentoml.access"}
    predict = access["json-rid-1"]
    assert (predict["method"], predict["route"], predict["path"], predict["status"]) == (
        "POST",
        "/reversal/predict",
        "/reversal/predict",
        200,
    )
    assert isinstance(predict["duration"], float) and predict["duration"] > 0
    model = access["json-rid-1-m"]
    assert (model["route"], model["path"], model["status"]) == (
        "/reversal/models/{version}",
        "/reversal/models/v3.1",
        200,
    )
    assert access["json-rid-1-404"]["status"] == 404
