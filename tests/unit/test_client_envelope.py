"""AIFXClient reads the service's envelope into typed models and sends the seed's request shapes."""

from __future__ import annotations

import httpx
import pytest

from aifx_client import (
    AIFXClient,
    AIFXRequestError,
    AIFXResponseError,
    Comparison,
    Experiment,
    ExperimentMetrics,
    Health,
    ModelsInfo,
    Prediction,
    RetryPolicy,
)
from aifx_client.testing import TIMESTAMP, FakeService, envelope, prediction_data

pytestmark = pytest.mark.unit

URL = "http://aifx.test"
CANDLES = [{"timestamp": "2017-01-02T00:00:00Z", "open": 1.05, "high": 1.06, "low": 1.04, "close": 1.055}]
EXPERIMENT = {
    "experiment_id": "v30_vs_v31",
    "name": "Swing Point vs Profitable Logic",
    "description": "Compare v3.0 with v3.1",
    "variant_a": "v3.0",
    "variant_b": "v3.1",
    "traffic_split": 0.5,
    "status": "active",
    "active": True,
}
METRICS = {
    "experiment_id": "v30_vs_v31",
    "name": "Swing Point vs Profitable Logic",
    "active": True,
    "variants": {
        "A": {
            "model_version": "v3.0",
            "traffic_split": 0.5,
            "metrics": {"count": 150, "signals": {"long": 45, "short": 30, "hold": 75}, "avg_confidence": 0.58},
        },
        "B": {
            "model_version": "v3.1",
            "traffic_split": 0.5,
            "metrics": {"count": 148, "signals": {"long": 60, "short": 52, "hold": 36}, "avg_confidence": 0.72},
        },
    },
    "comparison": {"winner": "B", "min_samples": 30},
}


def client_for(fake: FakeService, **kwargs: object) -> AIFXClient:
    """A client on the fake service, without waiting between retries."""
    kwargs.setdefault("retry", RetryPolicy(attempts=3, backoff=0))
    return AIFXClient(URL, transport=fake.transport(), **kwargs)  # type: ignore[arg-type]


def test_predict_reads_the_seed_example() -> None:
    fake = FakeService().on("POST", "/reversal/predict", FakeService.ok(prediction_data()))
    p = client_for(fake).predict("EUR/USD", "1h", data=CANDLES, user_id="user123")
    assert isinstance(p, Prediction)
    assert (p.signal, p.confidence, p.stage1_prob, p.stage2_prob) == ("long", 0.75, 0.82, 0.68)
    assert p.model_version == "v3.1" and p.source == "reversal" and p.factors["reversal_detected"] is True
    assert fake.body() == {"pair": "EUR/USD", "timeframe": "1h", "data": CANDLES, "user_id": "user123"}


def test_predict_under_an_experiment_keeps_its_ids() -> None:
    data = prediction_data("hold", stage2_prob=None, prediction_id="p-1", experiment_id="e", variant="B")
    fake = FakeService().on("POST", "/reversal/predict", FakeService.ok(data))
    p = client_for(fake).predict("EUR/USD", features=[[0.1, 0.2]], version="v3.0")
    assert (p.prediction_id, p.experiment_id, p.variant, p.stage2_prob) == ("p-1", "e", "B", None)
    assert fake.body() == {"pair": "EUR/USD", "timeframe": "1h", "features": [[0.1, 0.2]], "version": "v3.0"}


def test_unknown_fields_from_a_newer_server_are_kept() -> None:
    fake = FakeService().on("POST", "/reversal/predict", FakeService.ok(prediction_data(latency_ms=3.5)))
    p = client_for(fake).predict("EUR/USD", data=CANDLES)
    assert p.model_extra == {"latency_ms": 3.5}


def test_batch_returns_one_item_per_request_in_order() -> None:
    results = [
        {"success": True, "data": prediction_data("short"), "error": None},
        {"success": False, "data": None, "error": "items[1]: data: too few candles"},
    ]
    fake = FakeService().on("POST", "/reversal/predict/batch", FakeService.ok({"results": results}))
    items = client_for(fake).predict_batch(
        [{"pair": "EUR/USD", "data": CANDLES, "userId": "u1"}, {"pair": "GBP/USD", "features": [[1.0]]}]
    )
    assert [i.success for i in items] == [True, False]
    assert items[0].data is not None and items[0].data.signal == "short"
    assert items[1].error == "items[1]: data: too few candles"
    sent = fake.body()["items"]
    assert sent[0]["user_id"] == "u1" and sent[1]["timeframe"] == "1h"


def test_compare_reads_predictions_per_version() -> None:
    data = {
        "pair": "EUR/USD",
        "timeframe": "1h",
        "predictions": {
            "v3.0": {"signal": "hold", "confidence": 0.45, "model_version": "v3.0"},
            "v3.1": {"signal": "long", "confidence": 0.75, "model_version": "v3.1"},
        },
        "consensus": None,
        "disagreement": True,
        "timestamp": "2025-10-16T10:30:00Z",
    }
    fake = FakeService().on("POST", "/reversal/compare", FakeService.ok(data))
    c = client_for(fake).compare("EUR/USD", data=CANDLES, versions=["v3.0", "v3.1"])
    assert isinstance(c, Comparison)
    assert c.disagreement and c.consensus is None and c.predictions["v3.1"].signal == "long"
    assert fake.body()["versions"] == ["v3.0", "v3.1"]


def test_models_and_model_info() -> None:
    version = {"version": "v3.1", "name": "Profitable", "active": True, "loaded": True, "threshold": 0.5}
    fake = (
        FakeService()
        .on(
            "GET",
            "/reversal/models",
            FakeService.ok(
                {"active_version": "v3.1", "default": "v3.1", "fallback_order": ["v3.1"], "versions": [version]}
            ),
        )
        .on("GET", "/reversal/models/v3.1", FakeService.ok(version))
    )
    client = client_for(fake)
    models = client.models()
    assert isinstance(models, ModelsInfo) and models.active_version == "v3.1" and models.versions[0].loaded
    assert client.model_info("v3.1").threshold == 0.5


def test_path_segments_are_percent_encoded() -> None:
    fake = FakeService()
    with pytest.raises(AIFXRequestError):
        client_for(fake, fallback=False).model_info("../x/y")
    assert fake.requests[-1].url.raw_path == b"/reversal/models/..%2Fx%2Fy"


def test_admin_routes_send_the_bearer_token_and_others_do_not() -> None:
    fake = (
        FakeService()
        .on(
            "POST",
            "/reversal/models/v3.0/switch",
            FakeService.ok({"active_version": "v3.0", "previous_version": "v3.1"}),
        )
        .on("GET", "/reversal/models/v3.0", FakeService.ok({"version": "v3.0"}))
    )
    client = client_for(fake, admin_token="s3cret")
    assert client.switch_version("v3.0").previous_version == "v3.1"
    client.model_info("v3.0")
    assert fake.requests[0].headers["authorization"] == "Bearer s3cret"
    assert "authorization" not in fake.requests[1].headers


def test_experiment_lifecycle_routes() -> None:
    fake = (
        FakeService()
        .on("POST", "/reversal/experiments", FakeService.ok(EXPERIMENT, status=201))
        .on("POST", "/reversal/experiments/v30_vs_v31/activate", FakeService.ok(EXPERIMENT))
        .on("POST", "/reversal/experiments/v30_vs_v31/stop", FakeService.ok({**EXPERIMENT, "active": False}))
        .on("GET", "/reversal/experiments", FakeService.ok([EXPERIMENT]))
        .on("GET", "/reversal/experiments/v30_vs_v31/metrics", FakeService.ok(METRICS))
    )
    client = client_for(fake)
    made = client.create_experiment("v30_vs_v31", "Swing Point vs Profitable Logic", "v3.0", "v3.1", 0.5, "Compare")
    assert isinstance(made, Experiment) and made.variant_b == "v3.1"
    assert fake.body(0)["traffic_split"] == 0.5 and fake.body(0)["description"] == "Compare"
    assert client.activate_experiment("v30_vs_v31").active is True
    assert [e.experiment_id for e in client.experiments()] == ["v30_vs_v31"]
    metrics = client.experiment_metrics("v30_vs_v31")
    assert isinstance(metrics, ExperimentMetrics)
    assert metrics.variants["B"].metrics.signals == {"long": 60, "short": 52, "hold": 36}
    assert metrics.variants["A"].metrics.avg_confidence == 0.58 and metrics.winner == "B"
    assert client.stop_experiment("v30_vs_v31").active is False


def test_experiments_also_accept_an_object_with_a_list() -> None:
    fake = FakeService().on(
        "GET", "/reversal/experiments", FakeService.ok({"experiments": [EXPERIMENT], "active": None})
    )
    assert client_for(fake).experiments()[0].name == "Swing Point vs Profitable Logic"


def test_record_outcome_posts_pips() -> None:
    echo = {"prediction_id": "p-1", "experiment_id": "e", "variant": "A", "pips": 12.5}
    fake = FakeService().on("POST", "/reversal/predictions/p-1/outcome", FakeService.ok(echo))
    outcome = client_for(fake).record_outcome("p-1", 12.5)
    assert (outcome.pips, outcome.variant) == (12.5, "A") and fake.body() == {"pips": 12.5}


@pytest.mark.parametrize("status, state", [(200, "healthy"), (503, "unhealthy")])
def test_health_is_flat_and_read_even_when_unhealthy(status: int, state: str) -> None:
    body = {"status": state, "model_loaded": status == 200, "model_version": "v3.1", "timestamp": TIMESTAMP}
    fake = FakeService().on("GET", "/health", httpx.Response(status, json={**body, "environment": "test"}))
    client = client_for(fake)
    health = client.health()
    assert isinstance(health, Health) and health.status == state and health.ok is (status == 200)
    assert client.stats.retries == 0 and len(fake.requests) == 1


def test_error_envelope_becomes_a_request_error_with_the_servers_message() -> None:
    message = "data: 12 candles given; v3.1 needs at least 53"
    fake = FakeService().on("POST", "/reversal/predict", FakeService.fail(422, message))
    with pytest.raises(AIFXRequestError) as info:
        client_for(fake).predict("EUR/USD", data=CANDLES)
    assert info.value.status == 422 and info.value.message == message
    assert f"{URL}/reversal/predict" in str(info.value) and message in str(info.value)


@pytest.mark.parametrize(
    "reply, expected",
    [
        (httpx.Response(200, text="<html>proxy</html>"), "not a JSON object"),
        (httpx.Response(200, json={"signal": "long"}), "envelope"),
        (httpx.Response(200, json=envelope({"signal": "sideways", "confidence": 2})), "expected shape"),
        (httpx.Response(200, json={**envelope(None), "success": False, "error": "odd"}), "success=false"),
    ],
)
def test_responses_of_the_wrong_shape_raise_a_response_error(reply: httpx.Response, expected: str) -> None:
    fake = FakeService().on("POST", "/reversal/predict", reply)
    with pytest.raises(AIFXResponseError, match=expected):
        client_for(fake, fallback=False).predict("EUR/USD", data=CANDLES)


def test_bad_candles_are_rejected_before_sending() -> None:
    fake = FakeService()
    with pytest.raises(ValueError, match="close"):
        client_for(fake).predict("EUR/USD", data=[{"timestamp": 1, "open": 1.0, "high": 1.0, "low": 1.0}])
    assert fake.requests == []
