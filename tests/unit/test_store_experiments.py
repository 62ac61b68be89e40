"""Experiment lifecycle, schema and settings on SQLite and PostgreSQL (the db_url fixture)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError

from experiments import SCHEMA_VERSION, Conflict, ExperimentStore, Invalid, NotFound, SchemaMismatch
from experiments.schema import experiments

pytest_plugins = ["tests.conftest_pg"]

MakeStore = Callable[[], ExperimentStore]


def create(store: ExperimentStore, eid: str = "v30_vs_v31", **kw: object) -> dict:
    args = {"name": "Swing vs Profitable", "description": "d", "variant_a": "v3.0", "variant_b": "v3.1"}
    return store.create_experiment(eid, **{**args, **kw})  # type: ignore[arg-type]


def test_create_returns_experiment(store: ExperimentStore) -> None:
    exp = create(store, traffic_split=0.3)
    assert exp["experiment_id"] == "v30_vs_v31"
    assert (exp["variant_a"], exp["variant_b"], exp["traffic_split"]) == ("v3.0", "v3.1", 0.3)
    assert exp["status"] == "created" and exp["active"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", exp["salt"])  # a random secret: variants cannot be computed from the id
    assert create(store, "other")["salt"] != exp["salt"]
    assert exp["created_at"].endswith("+00:00") and exp["activated_at"] is None
    assert store.get_experiment("v30_vs_v31") == exp


def test_create_with_custom_salt_and_no_description(store: ExperimentStore) -> None:
    exp = create(store, salt="s-1", description=None)
    assert exp["salt"] == "s-1" and exp["description"] == ""


def test_duplicate_id_conflicts(store: ExperimentStore) -> None:
    create(store)
    with pytest.raises(Conflict, match="already exists"):
        create(store, name="other")


@pytest.mark.parametrize("split", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_invalid_traffic_split(store: ExperimentStore, split: object) -> None:
    with pytest.raises(Invalid, match="traffic_split"):
        create(store, traffic_split=split)


@pytest.mark.parametrize("eid", ["", "x" * 65, "a b", "a/b", "é", "a;drop"])
def test_invalid_experiment_id(store: ExperimentStore, eid: str) -> None:
    with pytest.raises(Invalid, match="experiment_id"):
        create(store, eid)


def test_longest_valid_id_is_accepted(store: ExperimentStore) -> None:
    assert create(store, "A-z_0.9" + "x" * 57)["experiment_id"] == "A-z_0.9" + "x" * 57


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"variant_a": "v3.1"}, "different"),
        ({"variant_b": "v" * 65}, "variant_b"),
        ({"variant_a": ""}, "variant_a"),
        ({"name": "  "}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"description": "d" * 2001}, "description"),
        ({"salt": "bad salt"}, "salt"),
    ],
)
def test_invalid_fields(store: ExperimentStore, kw: dict, field: str) -> None:
    with pytest.raises(Invalid, match=field):
        create(store, **kw)
    assert store.list_experiments() == []


def test_get_unknown_is_not_found(store: ExperimentStore) -> None:
    with pytest.raises(NotFound):
        store.get_experiment("nope")


def test_list_experiments_oldest_first(store: ExperimentStore) -> None:
    for eid in ("e1", "e2", "e3"):
        create(store, eid)
    assert [e["experiment_id"] for e in store.list_experiments()] == ["e1", "e2", "e3"]


def test_activate_lifecycle(store: ExperimentStore) -> None:
    create(store, "e1")
    assert store.active_experiment() is None
    exp = store.activate_experiment("e1")
    assert exp["status"] == "active" and exp["active"] is True and exp["activated_at"]
    assert store.activate_experiment("e1") == exp  # idempotent
    assert store.active_experiment() == exp


def test_activate_unknown_is_not_found(store: ExperimentStore) -> None:
    with pytest.raises(NotFound):
        store.activate_experiment("nope")


def test_second_active_experiment_conflicts(store: ExperimentStore) -> None:
    create(store, "e1")
    create(store, "e2")
    store.activate_experiment("e1")
    with pytest.raises(Conflict, match="e1"):
        store.activate_experiment("e2")
    store.stop_experiment("e1")
    assert store.activate_experiment("e2")["active"] is True


def test_stopped_experiment_cannot_be_reactivated(store: ExperimentStore) -> None:
    create(store, "e1")
    store.activate_experiment("e1")
    stopped = store.stop_experiment("e1")
    assert stopped["status"] == "stopped" and stopped["stopped_at"] and stopped["active"] is False
    assert store.active_experiment() is None
    with pytest.raises(Conflict, match="stopped"):
        store.activate_experiment("e1")


def test_stop_requires_active(store: ExperimentStore) -> None:
    create(store, "e1")
    with pytest.raises(Conflict, match="not active"):
        store.stop_experiment("e1")
    store.activate_experiment("e1")
    store.stop_experiment("e1")
    with pytest.raises(Conflict, match="not active"):
        store.stop_experiment("e1")
    with pytest.raises(NotFound):
        store.stop_experiment("nope")


def test_database_enforces_one_active(store: ExperimentStore) -> None:
    """The partial unique index rejects a second active row even when code checks are bypassed."""
    create(store, "e1")
    create(store, "e2")
    store.activate_experiment("e1")
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(update(experiments).where(experiments.c.experiment_id == "e2").values(status="active"))
    assert store.active_experiment()["experiment_id"] == "e1"  # type: ignore[index]


def test_state_survives_restart(make_store: MakeStore) -> None:
    first = make_store()
    create(first, "e1")
    first.activate_experiment("e1")
    first.set_active_version("v3.0")
    first.close()
    second = make_store()
    assert second.active_experiment()["experiment_id"] == "e1"  # type: ignore[index]
    assert second.get_active_version() == "v3.0"


def test_schema_version_recorded_and_checked(make_store: MakeStore, db_url: str) -> None:
    store = make_store()
    assert store.schema_version() == SCHEMA_VERSION
    assert make_store().schema_version() == SCHEMA_VERSION  # reopening is idempotent
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaMismatch, match="migrate"):
        ExperimentStore(db_url, auto_migrate=False).list_experiments()


def test_active_version_setting(make_store: MakeStore) -> None:
    worker1, worker2 = make_store(), make_store()
    assert worker1.get_active_version() is None
    worker1.set_active_version("v3.1")
    assert worker2.get_active_version() == "v3.1"
    worker2.set_active_version("v3.0")
    assert worker1.get_active_version() == "v3.0"
    with pytest.raises(Invalid):
        worker1.set_active_version("")


def test_generic_settings(store: ExperimentStore) -> None:
    assert store.get_setting("k") is None
    store.set_setting("k", "1")
    store.set_setting("k", "2")
    assert store.get_setting("k") == "2"
    with pytest.raises(Invalid):
        store.set_setting("k" * 65, "x")
