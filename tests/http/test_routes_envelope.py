"""In-process HTTP tests: every route's envelope and fields, and parity with the training pipeline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.http.route_checks import PAIR, assert_envelope

pytestmark = pytest.mark.http

PRED_FIELDS = {
    "pair", "timeframe", "signal", "confidence", "stage1_prob", "stage2_prob", "model_version", "factors", "timestamp"
}  # fmt: skip


def assert_prediction_fields(data: dict) -> None:
    """The seed's fields, plus `trade` exactly when the signal is long or short."""
    assert set(data) == PRED_FIELDS | ({"trade"} if data["signal"] != "hold" else set()), sorted(data)


def predict(client, candle_json, stop: int = 3000, n: int = 80, **extra):
    return client.post("/reversal/predict", json={**PAIR, "data": candle_json(stop, n), **extra})


def test_health_is_flat(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert {"status", "model_loaded", "model_version", "timestamp", "environment"} <= set(body)
    assert body["status"] == "healthy" and body["model_loaded"] is True
    assert body["model_version"] == "v3.1"


def test_predict_envelope_and_fields(client, candle_json):
    r = predict(client, candle_json)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_envelope(body)
    data = body["data"]
    assert_prediction_fields(data)
    assert data["signal"] in ("long", "short", "hold") and data["model_version"] == "v3.1"
    assert 0.0 <= data["confidence"] <= 1.0
    assert data["factors"]["reversal_detected"] is (data["signal"] != "hold")


def test_predict_accepts_user_id_spellings_and_version(client, candle_json):
    for extra in ({"user_id": "u1"}, {"userId": "u2"}, {"version": "v3.0"}):
        r = predict(client, candle_json, **extra)
        assert r.status_code == 200, r.text
    assert r.json()["data"]["model_version"] == "v3.0"


def test_version_without_stage2_serves_by_rule(client, candle_json):
    r = predict(client, candle_json, version="v2.9")  # threshold 0: always fires
    data = r.json()["data"]
    assert data["signal"] in ("long", "short") and data["stage2_prob"] is None
    assert "direction by rule" in data["factors"]["direction_source"]


def test_batch_isolates_bad_items(client, candle_json):
    good = {**PAIR, "data": candle_json(2500, 60)}
    items = [good, {**PAIR}, {**good, "version": "v9"}, good]
    r = client.post("/reversal/predict/batch", json={"items": items})
    assert r.status_code == 200
    body = r.json()
    assert_envelope(body)
    results = body["data"]["results"]
    assert [x["success"] for x in results] == [True, False, False, True]
    for x in results:
        assert set(x) == {"success", "data", "error"}
    assert results[1]["error"].startswith("items[1]:") and "send `data`" in results[1]["error"]
    assert "unknown model version" in results[2]["error"]
    assert_prediction_fields(results[0]["data"])


def test_compare(client, candle_json):
    r = client.post("/reversal/compare", json={**PAIR, "data": candle_json(2000, 80)})
    body = r.json()
    assert_envelope(body)
    data = body["data"]
    assert {"pair", "timeframe", "predictions", "consensus", "disagreement", "timestamp"} <= set(data)
    assert set(data["predictions"]) == {"v3.1", "v3.0", "v2.9", "v3.2"}
    for v, p in data["predictions"].items():
        assert p["model_version"] == v and {"signal", "confidence"} <= set(p)
    signals = {p["signal"] for p in data["predictions"].values()}
    assert data["disagreement"] is (len(signals) > 1)
    assert data["consensus"] == (signals.pop() if len(signals) == 1 else None)
    r = client.post("/reversal/compare", json={**PAIR, "data": candle_json(2000, 80), "versions": ["v3.0"]})
    assert list(r.json()["data"]["predictions"]) == ["v3.0"]


def test_models_list_and_info(client):
    body = client.get("/reversal/models").json()
    assert_envelope(body)
    data = body["data"]
    assert data["active_version"] in ("v3.1", "v3.0") and data["default"] == "v3.1"
    assert data["fallback_order"] == ["v3.1", "v3.0", "v2.9", "v3.2"]
    assert [v["version"] for v in data["versions"]] == ["v3.1", "v3.0", "v2.9", "v3.2"]
    assert all("metrics" in v for v in data["versions"])
    info = client.get("/reversal/models/v3.1").json()["data"]
    assert info["stages"]["stage1"]["loaded"] and info["stages"]["stage2"]["loaded"]
    assert info["window"] == 20 and len(info["features"]) == 12 and info["threshold"] == 0.5
    assert info["label_params"]["scheme"] == "triple_barrier"
    assert 0 < info["metrics"]["stage1"]["overall"]["model"]["base_rate"] < 1
    lite = client.get("/reversal/models/v2.9").json()["data"]
    assert lite["stages"]["stage2"]["in_store"] is False and "direction_rule" in lite["stages"]["stage2"]


def test_switch_and_back(client, candle_json):
    r = client.post("/reversal/models/v3.0/switch")
    assert r.status_code == 200
    assert r.json()["data"]["active_version"] == "v3.0"
    assert predict(client, candle_json).json()["data"]["model_version"] == "v3.0"
    assert client.get("/health").json()["model_version"] == "v3.0"
    r = client.post("/reversal/models/v3.1/switch")
    assert r.json()["data"] == {"active_version": "v3.1", "previous_version": "v3.0"}


def test_legacy_predict(client, candle_json):
    r = client.post("/predict", json={"data": candle_json(3000, 60)})
    body = r.json()
    assert_envelope(body)
    assert set(body["data"]) == {"prediction", "confidence", "factors"}
    assert body["data"]["prediction"] in ("long", "short", "hold")


def test_metrics_and_docs(client, candle_json):
    predict(client, candle_json)
    text = client.get("/metrics").text
    for name in ("aifx_predictions_total", "aifx_stage1_probability_bucket", "aifx_confidence_bucket"):
        assert name in text
    assert client.get("/docs.json").status_code == 200
    paths = client.get("/docs.json").json()["paths"]
    assert "/reversal/predict" in paths


def test_training_base_rate_gauge(client):
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "aifx_training_base_rate")
    published = {s.labels["version"]: s.value for s in family.samples}
    for version in ("v3.1", "v3.0"):
        stage1 = client.get(f"/reversal/models/{version}").json()["data"]["metrics"]["stage1"]
        assert published[version] == pytest.approx(stage1["overall"]["model"]["base_rate"])
    assert "v2.9" not in published  # its metadata records no base rate: no series rather than a made-up value


# ---- parity with the training pipeline --------------------------------------------------------


def _reference(version: str, candles, idx: np.ndarray):
    """Probabilities and decisions from sample_windows + scaler + the stored Keras models + their calibration maps."""
    from pathlib import Path

    import bentoml
    import keras

    from aifx import signal as sig
    from aifx.calibration import Calibration
    from aifx.features import sample_windows
    from aifx.versions import Scaler, VersionSpec

    m1 = bentoml.models.get(f"aifx-{version}-stage1")
    spec = VersionSpec.from_metadata(m1.info.metadata)
    scaler = Scaler.from_json(json.loads(Path(m1.path, "scaler.json").read_text()))
    x, ends = sample_windows(candles, spec.features, spec.window)
    xs = scaler.transform(x[idx]).astype(np.float32)
    m2 = bentoml.models.get(f"aifx-{version}-stage2")
    maps = [Calibration.from_json(json.loads(Path(m.path, "calibration.json").read_text())) for m in (m1, m2)]
    assert not any(c.is_identity for c in maps)  # the served probabilities go through a real map
    p1, p2 = (
        c(keras.models.load_model(Path(m.path, "model.keras"), compile=False)(xs).numpy().reshape(-1))
        for m, c in zip((m1, m2), maps, strict=True)
    )
    decisions = [
        sig.decide(float(a), spec.threshold, float(b) if sig.fires(float(a), spec.threshold) else None)
        for a, b in zip(p1, p2, strict=True)
    ]
    return spec, x[idx], ends[idx], decisions


@pytest.mark.parametrize("version,count", [("v3.1", 200), ("v3.0", 60), ("v3.2", 200)])
def test_parity_with_training_pipeline(client, candles, candle_json, version, count):
    n_windows = len(candles) - 60
    idx = np.linspace(0, n_windows - 1, count).astype(int)
    spec, x, ends, expected = _reference(version, candles, idx)
    fired = 0
    for end, want in zip(ends, expected, strict=True):
        n = min(spec.min_candles + 7, int(end) + 1)
        r = client.post("/reversal/predict", json={**PAIR, "version": version, "data": candle_json(int(end) + 1, n)})
        assert r.status_code == 200, r.text
        got = r.json()["data"]
        assert got["signal"] == want.signal
        assert math.isclose(got["stage1_prob"], want.stage1_prob, abs_tol=1e-6)
        assert math.isclose(got["confidence"], want.confidence, abs_tol=1e-6)
        if want.stage2_prob is None:
            assert got["stage2_prob"] is None
        else:
            fired += 1
            assert math.isclose(got["stage2_prob"], want.stage2_prob, abs_tol=1e-6)
    assert 0 < fired < count  # both branches are exercised
    # the same windows as precomputed features give the same answer
    for rows, want in list(zip(x, expected, strict=True))[:20]:
        r = client.post("/reversal/predict", json={**PAIR, "version": version, "features": rows.tolist()})
        assert math.isclose(r.json()["data"]["stage1_prob"], want.stage1_prob, abs_tol=1e-6)
