"""One error for an unknown or unavailable version: 404 in a path, 422 in a body field, 503 when not serving."""

from __future__ import annotations

import uuid

import pytest

from aifx.serving.registry import Availability

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
CONFIGURED = "configured versions: v3.1, v3.0, v2.9, v3.2"


def test_unknown_version_in_a_path_is_404(client):
    for method, path in (("get", "/reversal/models/v9.9"), ("post", "/reversal/models/v9.9/switch")):
        r = client.request(method, path)
        assert r.status_code == 404, r.text
        assert r.json()["error"] == f"unknown model version 'v9.9'; {CONFIGURED}"


def test_unknown_version_in_a_body_field_is_422_and_names_the_field(client, candle_json):
    data = {**PAIR, "data": candle_json(3000, 80)}
    cases = [
        ("/reversal/predict", {**data, "version": "v9.9"}, "version"),
        ("/predict", {**data, "version": "v9.9"}, "version"),
        ("/reversal/compare", {**data, "versions": ["v3.1", "v9.9"]}, "versions"),
        (
            "/reversal/experiments",
            {"experiment_id": f"e-{uuid.uuid4().hex[:8]}", "name": "n", "variant_a": "v3.0", "variant_b": "v9.9"},
            "variant_b",
        ),
    ]
    for path, body, field in cases:
        r = client.post(path, json=body)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"] == f"{field}: unknown model version 'v9.9'; {CONFIGURED}", path


def test_a_version_that_does_not_serve_is_503_everywhere(client, candle_json, monkeypatch):
    from aifx.http.bootstrap import app

    registry = app.state.parts.registry
    down = Availability(loaded=["v3.1", "v3.0"], failed={"v2.9": "stage 1 model not loaded"}, stages_reachable=True)

    async def availability(refresh: bool = False) -> Availability:
        return down

    monkeypatch.setattr(registry, "availability", availability)
    expected = "model version v2.9 is not available (stage 1 model not loaded); loaded versions: v3.1, v3.0"
    data = {**PAIR, "data": candle_json(3000, 80)}
    spec = {"experiment_id": f"e-{uuid.uuid4().hex[:8]}", "name": "n", "variant_a": "v3.0", "variant_b": "v2.9"}
    for path, body, where in (
        ("/reversal/predict", {**data, "version": "v2.9"}, "version: "),
        ("/reversal/compare", {**data, "versions": ["v2.9"]}, "versions: "),
        ("/reversal/experiments", spec, "variant_b: "),
        ("/reversal/models/v2.9/switch", None, ""),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert r.json()["error"] == where + expected, path
