"""Anchored comparisons (issue 26) on SQLite and PostgreSQL: start, save, a decision that stands, restart,
the alpha-spending index, retention leaving anchors alone, and migration 0006 up and down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from experiments import EvaluationStore, ExperimentStore, Invalid, NotFound
from experiments.anchors import AnchorStore
from experiments.schema import SCHEMA_VERSION
from tests.alembic_steps import alembic, tables

pytest_plugins = ["tests.conftest_pg"]
T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def anchors(store: ExperimentStore) -> AnchorStore:
    return AnchorStore(store)


def test_an_anchor_is_started_saved_and_read_back(anchors: AnchorStore) -> None:
    assert anchors.get("v3.1", "v3.2") is None and anchors.anchors() == []
    got = anchors.start("v3.1", "v3.2", "*", 0.01, {"format": 1, "s1": 0.5}, 0, T0)
    assert got["state"] == {"format": 1, "s1": 0.5} and got["alpha"] == 0.01 and got["decision"] is None
    assert got["started_at"] == T0.isoformat() and got["decisions_spent"] == 0
    saved = anchors.save("v3.1", "v3.2", "*", {"format": 1, "s1": 1.5}, None)
    assert saved["state"]["s1"] == 1.5 and saved["decided_at"] is None and saved["started_at"] == got["started_at"]
    assert anchors.get("v3.1", "v3.2", "*") == saved and anchors.anchors(b="v3.2") == [saved]


def test_a_decision_stands_until_the_anchor_is_started_anew(anchors: AnchorStore) -> None:
    anchors.start("v3.1", "v3.2", "*", 0.01, {}, 0)
    first = anchors.save("v3.1", "v3.2", "*", {"k": 1}, "b_better")
    assert first["decision"] == "b_better" and first["decided_at"] is not None
    later = anchors.save("v3.1", "v3.2", "*", {"k": 2}, "a_better")
    assert later["decision"] == "b_better" and later["decided_at"] == first["decided_at"] and later["state"] == {"k": 2}
    again = anchors.save("v3.1", "v3.2", "*", {"k": 3}, None)
    assert again["decision"] == "b_better"
    reset = anchors.start("v3.1", "v3.2", "*", 0.002, {}, 1, T0 + timedelta(days=1))
    assert reset["decision"] is None and reset["decided_at"] is None and reset["decisions_spent"] == 1


def test_the_next_index_counts_every_anchor_of_the_challenger(anchors: AnchorStore) -> None:
    assert anchors.next_index("v3.2") == 0
    anchors.start("v3.1", "v3.2", "*", 0.01, {}, 0)
    anchors.start("v3.0", "v3.2", "*", 0.01, {}, 3)
    anchors.start("v3.1", "v3.3", "*", 0.01, {}, 7)
    assert anchors.next_index("v3.2") == 4 and anchors.next_index("v3.3") == 8 and anchors.next_index("v9") == 0


def test_bad_input_is_refused(anchors: AnchorStore) -> None:
    for bad in (
        lambda: anchors.start("v3.1", "v3.1", "*", 0.01, {}, 0),
        lambda: anchors.start("v3.1", "v3.2", "*", 1.0, {}, 0),
        lambda: anchors.start("v3.1", "v3.2", "*", float("nan"), {}, 0),
        lambda: anchors.start("v3.1", "v3.2", "*", 0.01, {"x": float("nan")}, 0),
        lambda: anchors.start("v3.1", "v3.2", "*", 0.01, {}, -1),
        lambda: anchors.start("v3.1", "v3.2", "a b", 0.01, {}, 0),
        lambda: anchors.start("v3.1", "v3.2", "*", 0.01, [], 0),  # type: ignore[arg-type]
    ):
        with pytest.raises(Invalid):
            bad()
    with pytest.raises(NotFound):
        anchors.save("v3.1", "v3.2", "*", {}, None)


def test_retention_never_deletes_anchors(store: ExperimentStore, anchors: AnchorStore) -> None:
    anchors.start("v3.1", "v3.2", "*", 0.01, {"s1": 1.0}, 0, T0 - timedelta(days=3650))
    EvaluationStore(store).purge(timedelta(seconds=0))
    store.purge_predictions(timedelta(seconds=0))
    assert anchors.get("v3.1", "v3.2")["state"] == {"s1": 1.0}  # type: ignore[index]


def test_migration_0006_goes_up_and_down(store: ExperimentStore, anchors: AnchorStore) -> None:
    anchors.start("v3.1", "v3.2", "*", 0.01, {}, 0)
    assert SCHEMA_VERSION == "0008" and "comparison_anchors" in tables(store.engine)
    assert alembic(store.engine, "downgrade", "0005") == "0005"
    assert "comparison_anchors" not in tables(store.engine) and "promotion_policy" in tables(store.engine)
    assert alembic(store.engine, "upgrade", "head") == "0008"
    assert anchors.anchors() == []
    anchors.start("v3.1", "v3.2", "*", 0.01, {}, 0)
    assert len(anchors.anchors()) == 1
