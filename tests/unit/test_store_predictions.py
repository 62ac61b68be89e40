"""Predictions, outcomes and metrics on SQLite and PostgreSQL (the db_url fixture)."""

from __future__ import annotations

import json
import uuid

import pytest

from experiments import Conflict, ExperimentStore, Invalid, NotFound, compare

pytest_plugins = ["tests.conftest_pg"]

EID = "v30_vs_v31"


@pytest.fixture
def active(store: ExperimentStore) -> ExperimentStore:
    """A store with experiment v30_vs_v31 (A=v3.0, B=v3.1, split 0.4) active."""
    store.create_experiment(EID, "Swing vs Profitable", "d", "v3.0", "v3.1", 0.4)
    store.activate_experiment(EID)
    return store


def predict(store: ExperimentStore, variant: str = "A", **kw: object) -> str:
    args: dict = {"user_id": "u1", "signal": "long", "confidence": 0.75, "stage1_prob": 0.82}
    args["model_version"] = "v3.0" if variant == "A" else "v3.1"
    return store.record_prediction(EID, variant=variant, **{**args, **kw})


def test_record_prediction_is_persisted(active: ExperimentStore) -> None:
    pid = predict(active, "B", stage2_prob=0.68)
    assert str(uuid.UUID(pid)) == pid
    row = active.get_prediction(pid)
    assert row["experiment_id"] == EID and row["variant"] == "B" and row["model_version"] == "v3.1"
    assert (row["signal"], row["confidence"], row["stage1_prob"], row["stage2_prob"]) == (
        "long",
        0.75,
        0.82,
        0.68,
    )
    assert row["user_id"] == "u1" and row["pips"] is None and row["created_at"]


def test_record_prediction_minimal_fields(active: ExperimentStore) -> None:
    pid = active.record_prediction(EID, "u", "A", "v3.0", "hold", 0.55)
    assert active.get_prediction(pid)["stage1_prob"] is None


def test_get_unknown_prediction(active: ExperimentStore) -> None:
    with pytest.raises(NotFound):
        active.get_prediction(str(uuid.uuid4()))


def test_record_prediction_unknown_experiment(store: ExperimentStore) -> None:
    with pytest.raises(NotFound):
        predict(store)


def test_record_prediction_requires_active_experiment(store: ExperimentStore) -> None:
    store.create_experiment(EID, "n", "", "v3.0", "v3.1")
    with pytest.raises(Conflict, match="not active"):
        predict(store)
    store.activate_experiment(EID)
    predict(store)
    store.stop_experiment(EID)
    with pytest.raises(Conflict, match="not active"):
        predict(store)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"variant": "C"}, "variant"),
        ({"signal": "buy"}, "signal"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"stage1_prob": -0.1}, "stage1_prob"),
        ({"stage2_prob": "x"}, "stage2_prob"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "u" * 257}, "user_id"),
        ({"model_version": "v3.1"}, "v3.0"),
    ],
)
def test_record_prediction_invalid(active: ExperimentStore, kw: dict, field: str) -> None:
    with pytest.raises(Invalid, match=field):
        predict(active, **kw)
    assert active.metrics(EID)["variants"]["A"]["metrics"]["count"] == 0


def test_record_outcome_and_idempotency(active: ExperimentStore) -> None:
    pid = predict(active, "B")
    first = active.record_outcome(pid, 12.5)
    assert first["created"] is True and first["hit"] is True
    assert (first["prediction_id"], first["experiment_id"], first["variant"], first["pips"]) == (
        pid,
        EID,
        "B",
        12.5,
    )
    again = active.record_outcome(pid, 12.5)
    assert again["created"] is False
    assert again["recorded_at"] == first["recorded_at"] and again["pips"] == 12.5
    with pytest.raises(Conflict, match="12.5"):
        active.record_outcome(pid, -3.0)
    assert active.get_prediction(pid)["pips"] == 12.5


def test_record_outcome_unknown_prediction(active: ExperimentStore) -> None:
    with pytest.raises(NotFound):
        active.record_outcome(str(uuid.uuid4()), 1.0)
    with pytest.raises(NotFound):
        active.record_outcome("not-a-uuid" * 10, 1.0)


@pytest.mark.parametrize("pips", [float("nan"), float("inf"), "3", None, True])
def test_record_outcome_invalid_pips(active: ExperimentStore, pips: object) -> None:
    pid = predict(active)
    with pytest.raises(Invalid, match="pips"):
        active.record_outcome(pid, pips)  # type: ignore[arg-type]


def test_outcome_after_stop_is_accepted(active: ExperimentStore) -> None:
    pid = predict(active)
    active.stop_experiment(EID)
    assert active.record_outcome(pid, -4.0)["hit"] is False


def test_metrics_unknown_experiment(store: ExperimentStore) -> None:
    with pytest.raises(NotFound):
        store.metrics("nope")


def test_metrics_of_empty_experiment_is_json_safe(active: ExperimentStore) -> None:
    m = active.metrics(EID)
    json.dumps(m, allow_nan=False)
    a = m["variants"]["A"]["metrics"]
    assert a["count"] == 0 and a["avg_confidence"] is None
    assert a["outcomes"] == {"count": 0, "hit_rate": None, "mean_pips": None, "total_pips": 0.0}
    assert m["comparison"]["winner"] is None


def test_metrics_shape_and_values(active: ExperimentStore) -> None:
    rows = [("A", "long", 0.6, 5.0), ("A", "hold", 0.8, -2.0), ("A", "short", 0.7, None)]
    rows += [
        ("B", "long", 0.9, 3.0),
        ("B", "long", 0.5, 1.0),
        ("B", "short", 0.7, -1.0),
        ("B", "hold", 0.6, 0.0),
    ]
    for variant, signal, conf, pips in rows:
        pid = predict(active, variant, signal=signal, confidence=conf)
        if pips is not None:
            active.record_outcome(pid, pips)
    m = active.metrics(EID)
    json.dumps(m, allow_nan=False)
    assert set(m) == {"experiment_id", "name", "description", "status", "active", "variants", "comparison",
                      "market_comparison"}  # fmt: skip
    assert (m["experiment_id"], m["status"], m["active"]) == (EID, "active", True)
    a, b = m["variants"]["A"], m["variants"]["B"]
    assert set(a) == {"model_version", "traffic_split", "metrics"}
    assert (a["model_version"], b["model_version"]) == ("v3.0", "v3.1")
    assert a["traffic_split"] == pytest.approx(0.6) and b["traffic_split"] == pytest.approx(0.4)
    assert a["metrics"]["count"] == 3 and b["metrics"]["count"] == 4
    assert a["metrics"]["signals"] == {"long": 1, "short": 1, "hold": 1}
    assert b["metrics"]["signals"] == {"long": 2, "short": 1, "hold": 1}
    assert a["metrics"]["avg_confidence"] == pytest.approx(0.7)
    assert b["metrics"]["avg_confidence"] == pytest.approx(0.675)
    assert a["metrics"]["outcomes"] == pytest.approx({"count": 2, "hit_rate": 0.5, "mean_pips": 1.5, "total_pips": 3.0})
    assert b["metrics"]["outcomes"] == pytest.approx(
        {"count": 4, "hit_rate": 0.5, "mean_pips": 0.75, "total_pips": 3.0}
    )
    assert m["comparison"] == compare([5.0, -2.0], [3.0, 1.0, -1.0, 0.0])
    assert a["metrics"]["market_outcomes"] == {  # none of these predictions named its bar
        "count": 0, "hit_rate": None, "mean_pips": None, "total_pips": 0.0, "source": "market",
    }  # fmt: skip


def test_metrics_keep_working_after_stop(active: ExperimentStore) -> None:
    predict(active)
    active.stop_experiment(EID)
    m = active.metrics(EID)
    assert m["active"] is False and m["status"] == "stopped"
    assert m["variants"]["A"]["metrics"]["count"] == 1
