"""In-process HTTP tests of the experiment and outcome routes: shapes, lifecycle and every validation case."""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Iterator

import pytest

from aifx.serving.registry import Availability
from tests.http.route_checks import PAIR, assert_envelope

pytestmark = pytest.mark.http

EXPERIMENT_FIELDS = {
    "experiment_id", "name", "description", "variant_a", "variant_b", "traffic_split", "salt", "status", "active",
    "created_at", "activated_at", "stopped_at",
}  # fmt: skip
TOKEN = "s3cret-s3cret-s3cret-s3cret-s3cret"  # at least 32 characters


def new_id() -> str:
    return f"exp-{uuid.uuid4().hex[:10]}"


def spec(eid: str, **kw: object) -> dict:
    body = {"experiment_id": eid, "name": "Swing vs Profitable", "description": "http test"}
    return {**body, "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5, **kw}


def create(client, eid: str | None = None, **kw: object) -> dict:
    r = client.post("/reversal/experiments", json=spec(eid or new_id(), **kw))
    assert r.status_code == 201, r.text
    return r.json()["data"]


def predict(client, candle_json, user: str | None = None, stop: int = 3000, **extra):
    body = {**PAIR, "data": candle_json(stop, 80), **extra}
    if user is not None:
        body["user_id"] = user
    return client.post("/reversal/predict", json=body)


@pytest.fixture(autouse=True)
def no_active_experiment(client) -> Iterator[None]:
    """Each test starts and ends without an active experiment (the session database is shared)."""
    yield
    active = client.get("/reversal/experiments").json()["data"]["active_experiment_id"]
    if active is not None:
        assert client.post(f"/reversal/experiments/{active}/stop").status_code == 200


def test_create_returns_the_experiment(client):
    eid = new_id()
    r = client.post("/reversal/experiments", json=spec(eid, traffic_split=0.3))
    assert r.status_code == 201, r.text
    assert_envelope(r.json())
    data = r.json()["data"]
    assert set(data) == EXPERIMENT_FIELDS
    assert (data["experiment_id"], data["variant_a"], data["variant_b"], data["traffic_split"]) == (
        eid,
        "v3.0",
        "v3.1",
        0.3,
    )
    assert data["status"] == "created" and data["active"] is False and data["description"] == "http test"


def test_traffic_split_defaults_to_half_and_description_is_optional(client):
    body = spec(new_id())
    del body["traffic_split"], body["description"]
    data = client.post("/reversal/experiments", json=body).json()["data"]
    assert data["traffic_split"] == 0.5 and data["description"] == ""


BAD_CREATE = [
    # (name, body changes, message part); every one is a 422
    ("unknown variant_a", {"variant_a": "v9.9"}, "variant_a: unknown model version 'v9.9'"),
    ("unknown variant_b", {"variant_b": "nope"}, "variant_b: unknown model version 'nope'"),
    ("split 0", {"traffic_split": 0}, "traffic_split"),
    ("split 1", {"traffic_split": 1}, "traffic_split"),
    ("split 1.5", {"traffic_split": 1.5}, "traffic_split"),
    ("split negative", {"traffic_split": -0.2}, "traffic_split"),
    ("split not a number", {"traffic_split": "half"}, "traffic_split"),
    ("split boolean", {"traffic_split": True}, "traffic_split"),
    ("same variants", {"variant_b": "v3.0"}, "must be different"),
    ("bad id", {"experiment_id": "has space"}, "experiment_id"),
    ("id too long", {"experiment_id": "x" * 65}, "experiment_id"),
    ("blank name", {"name": "  "}, "name"),
    ("name wrong type", {"name": 42}, "name"),
]


@pytest.mark.parametrize("name,change,part", BAD_CREATE, ids=[b[0] for b in BAD_CREATE])
def test_create_rejects_bad_input_with_422(client, name, change, part):
    r = client.post("/reversal/experiments", json=spec(new_id(), **change))
    assert r.status_code == 422, r.text
    assert_envelope(r.json(), success=False)
    assert part in r.json()["error"]


def test_create_rejects_a_version_that_is_not_loaded_with_503(client, monkeypatch):
    from aifx.http.bootstrap import app

    registry = app.state.parts.registry
    partial = Availability(loaded=["v3.1", "v3.0"], failed={"v2.9": "stage 1 model not loaded"}, stages_reachable=True)

    async def availability(refresh: bool = False) -> Availability:
        return partial

    monkeypatch.setattr(registry, "availability", availability)
    r = client.post("/reversal/experiments", json=spec(new_id(), variant_b="v2.9"))
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert "variant_b: model version v2.9 is not available (stage 1 model not loaded)" in error
    assert "loaded versions: v3.1, v3.0" in error


def test_missing_and_malformed_bodies(client):
    r = client.post("/reversal/experiments", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 400 and '"experiment_id"' in r.json()["error"]
    r = client.post("/reversal/experiments", json={"experiment_id": "x"})
    assert r.status_code == 422 and "name" in r.json()["error"] and "variant_a" in r.json()["error"]


def test_duplicate_id_is_409(client):
    eid = create(client)["experiment_id"]
    r = client.post("/reversal/experiments", json=spec(eid, name="again"))
    assert r.status_code == 409
    assert_envelope(r.json(), success=False)
    assert r.json()["error"] == f"experiment {eid!r} already exists"


def test_lifecycle_activate_and_stop(client):
    eid = create(client)["experiment_id"]
    r = client.post(f"/reversal/experiments/{eid}/activate")
    assert r.status_code == 200, r.text
    assert_envelope(r.json())
    data = r.json()["data"]
    assert data["status"] == "active" and data["active"] is True and data["activated_at"]
    assert client.post(f"/reversal/experiments/{eid}/activate").status_code == 200  # idempotent
    listing = client.get("/reversal/experiments").json()["data"]
    assert listing["active_experiment_id"] == eid
    r = client.post(f"/reversal/experiments/{eid}/stop")
    assert r.status_code == 200
    assert r.json()["data"]["status"] == "stopped" and r.json()["data"]["stopped_at"]
    r = client.post(f"/reversal/experiments/{eid}/activate")
    assert r.status_code == 409 and "is stopped" in r.json()["error"]


def test_activating_a_second_experiment_is_409(client):
    first, second = create(client)["experiment_id"], create(client)["experiment_id"]
    assert client.post(f"/reversal/experiments/{first}/activate").status_code == 200
    r = client.post(f"/reversal/experiments/{second}/activate")
    assert r.status_code == 409
    assert_envelope(r.json(), success=False)
    assert f"experiment {first!r} is already active; stop it first" in r.json()["error"]


def test_stopping_an_inactive_experiment_is_409(client):
    eid = create(client)["experiment_id"]
    r = client.post(f"/reversal/experiments/{eid}/stop")
    assert r.status_code == 409
    assert_envelope(r.json(), success=False)
    assert "is not active (status 'created')" in r.json()["error"]


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/reversal/experiments/no-such-exp/activate"),
        ("POST", "/reversal/experiments/no-such-exp/stop"),
        ("GET", "/reversal/experiments/no-such-exp/metrics"),
    ],
)
def test_unknown_experiment_is_404(client, method, path):
    r = client.request(method, path)
    assert r.status_code == 404
    assert_envelope(r.json(), success=False)
    assert r.json()["error"] == "experiment 'no-such-exp' not found"


def test_list_is_oldest_first(client):
    ids = [create(client)["experiment_id"] for _ in range(2)]
    r = client.get("/reversal/experiments")
    assert_envelope(r.json())
    listed = [e["experiment_id"] for e in r.json()["data"]["experiments"]]
    assert listed.index(ids[0]) < listed.index(ids[1])
    assert all(set(e) == EXPERIMENT_FIELDS - {"salt"} for e in r.json()["data"]["experiments"])  # salt: admin only


def test_metrics_of_a_new_experiment_have_the_seed_shape(client):
    eid = create(client, traffic_split=0.25)["experiment_id"]
    r = client.get(f"/reversal/experiments/{eid}/metrics")
    assert r.status_code == 200
    assert_envelope(r.json())
    data = r.json()["data"]
    assert (data["experiment_id"], data["name"], data["active"]) == (eid, "Swing vs Profitable", False)
    assert set(data["variants"]) == {"A", "B"}
    a, b = data["variants"]["A"], data["variants"]["B"]
    assert (a["model_version"], a["traffic_split"], b["model_version"], b["traffic_split"]) == (
        "v3.0",
        0.75,
        "v3.1",
        0.25,
    )
    for v in (a, b):
        assert v["metrics"]["count"] == 0 and v["metrics"]["signals"] == {"long": 0, "short": 0, "hold": 0}
        assert v["metrics"]["avg_confidence"] is None and v["metrics"]["outcomes"]["count"] == 0
    comparison = data["comparison"]
    assert {"pips", "hit_rate", "winner", "min_samples"} <= set(comparison)
    assert comparison["winner"] is None and comparison["min_samples"] == 30


# ---- outcomes ---------------------------------------------------------------------------------


@pytest.fixture
def served(client, candle_json) -> dict:
    """One prediction served under a freshly activated experiment."""
    eid = create(client)["experiment_id"]
    client.post(f"/reversal/experiments/{eid}/activate")
    r = predict(client, candle_json, user="outcome-user")
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_outcome_is_recorded_then_idempotent_then_conflicting(client, served):
    path = f"/reversal/predictions/{served['prediction_id']}/outcome"
    r = client.post(path, json={"pips": 12.5})
    assert r.status_code == 201, r.text
    assert_envelope(r.json())
    first = r.json()["data"]
    assert first["prediction_id"] == served["prediction_id"]
    assert (first["experiment_id"], first["variant"], first["pips"]) == (
        served["experiment_id"],
        served["variant"],
        12.5,
    )
    assert first["model_version"] == served["model_version"] and first["hit"] is True and first["created"] is True
    r = client.post(path, json={"pips": 12.5})
    assert r.status_code == 200
    assert r.json()["data"]["created"] is False and r.json()["data"]["pips"] == 12.5
    r = client.post(path, json={"pips": -3})
    assert r.status_code == 409
    assert_envelope(r.json(), success=False)
    assert "already has an outcome of 12.5 pips" in r.json()["error"]


def test_outcome_for_an_unknown_prediction_is_404(client):
    r = client.post("/reversal/predictions/00000000-0000-0000-0000-000000000000/outcome", json={"pips": 1.0})
    assert r.status_code == 404
    assert_envelope(r.json(), success=False)
    assert "prediction '00000000-0000-0000-0000-000000000000' not found" in r.json()["error"]


@pytest.mark.parametrize(
    "content,status,part",
    [
        (b"", 400, '{"pips": 12.5}'),
        (b"{pips", 400, "not valid JSON"),
        (json.dumps({"pips": "12"}).encode(), 422, "pips"),
        (json.dumps({"pips": True}).encode(), 422, "pips"),
        (json.dumps({}).encode(), 422, "pips"),
        (b'{"pips": NaN}', 422, "pips"),
    ],
    ids=["empty", "not json", "string", "boolean", "missing", "nan"],
)
def test_outcome_rejects_bad_bodies(client, served, content, status, part):
    path = f"/reversal/predictions/{served['prediction_id']}/outcome"
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert_envelope(r.json(), success=False)
    assert part in r.json()["error"]


def test_outcomes_show_in_metrics(client, served):
    client.post(f"/reversal/predictions/{served['prediction_id']}/outcome", json={"pips": -4.0})
    data = client.get(f"/reversal/experiments/{served['experiment_id']}/metrics").json()["data"]
    variant = data["variants"][served["variant"]]["metrics"]
    assert variant["count"] == 1 and variant["signals"][served["signal"]] == 1
    assert variant["avg_confidence"] == pytest.approx(served["confidence"])
    assert variant["outcomes"] == {"count": 1, "hit_rate": 0.0, "mean_pips": -4.0, "total_pips": -4.0}


# ---- admin authentication ---------------------------------------------------------------------


@pytest.fixture
def guarded(client):
    """The same parts behind an app that requires an admin token."""
    from aifx.http.app import create_app
    from aifx.http.bootstrap import app
    from aifx.settings import Settings

    guarded_app = create_app(Settings(admin_token=TOKEN, versions=("v3.1", "v3.0", "v2.9")))
    guarded_app.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    with TestClient(guarded_app) as c:
        yield c


def test_admin_routes_need_the_token(guarded):
    eid = new_id()
    token = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/reversal/experiments", f"/reversal/experiments/{eid}/activate", f"/reversal/experiments/{eid}/stop"):
        for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 403)):
            r = guarded.post(path, json=spec(eid), headers=headers)
            assert r.status_code == status, path
            assert_envelope(r.json(), success=False)
            assert "AIFX_ADMIN_TOKEN" in r.json()["error"]
    assert guarded.post("/reversal/experiments", json=spec(eid), headers=token).status_code == 201
    assert guarded.post(f"/reversal/experiments/{eid}/activate", headers=token).status_code == 200
    assert guarded.get("/reversal/experiments").status_code == 200  # reads are open
    assert guarded.get(f"/reversal/experiments/{eid}/metrics").status_code == 200
    assert guarded.post(f"/reversal/experiments/{eid}/stop", headers=token).status_code == 200


def test_routes_are_documented(client):
    paths = client.get("/docs.json").json()["paths"]
    for path in (
        "/reversal/experiments",
        "/reversal/experiments/{experiment_id}/activate",
        "/reversal/experiments/{experiment_id}/stop",
        "/reversal/experiments/{experiment_id}/metrics",
        "/reversal/predictions/{prediction_id}/outcome",
    ):
        assert path in paths, path
