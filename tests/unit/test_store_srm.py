"""Sample-ratio-mismatch flags (issue 26) on SQLite and PostgreSQL: the first flag stands (a later flag, a later
calm read or a new store, i.e. a restart, leave it), an admin reset clears it and records the baseline the test
restarts from, and migration 0008 goes up and down without touching the experiments or their predictions."""

from __future__ import annotations

import pytest

from aifx import srm
from experiments import ExperimentStore, Invalid, NotFound, SrmStore
from experiments.schema import SCHEMA_VERSION
from tests.alembic_steps import alembic, tables

pytest_plugins = ["tests.conftest_pg"]
SHARES = {"A": 0.5, "B": 0.5}


@pytest.fixture
def flags(store: ExperimentStore) -> SrmStore:
    store.create_experiment("e1", "n", "d", "v3.0", "v3.1")
    return SrmStore(store)


def test_the_first_flag_stands_across_reads_and_restarts(store: ExperimentStore, flags: SrmStore) -> None:
    assert flags.get("e1") is None
    first = flags.flag("e1", {"p_value": 1e-4, "users": {"A": 900, "B": 700}})
    assert first["flagged_at"] is not None and first["flag"]["p_value"] == 1e-4 and first["baseline"] is None
    again = flags.flag("e1", {"p_value": 1e-9, "users": {"A": 990, "B": 700}})  # a later flagging read
    assert again == first
    assert SrmStore(ExperimentStore(store.url)).get("e1") == first  # a new engine: another worker, or a restart
    with pytest.raises(NotFound):
        flags.flag("nope", {"p_value": 0.0})
    with pytest.raises(Invalid):
        flags.flag("e1", {"p_value": float("nan")})


def test_a_reset_clears_the_flag_and_records_the_baseline(flags: SrmStore) -> None:
    flags.flag("e1", {"p_value": 1e-4})
    reset = flags.reset("e1", {"A": 900, "B": 700})
    assert reset["flagged_at"] is None and reset["flag"] is None
    assert reset["baseline"] == {"A": 900, "B": 700} and reset["reset_at"] is not None
    flagged = flags.flag("e1", {"p_value": 5e-4})
    assert flagged["flag"] == {"p_value": 5e-4} and flagged["baseline"] == {"A": 900, "B": 700}
    with pytest.raises(Invalid):
        flags.reset("e1", {"A": -1})
    with pytest.raises(NotFound):
        flags.reset("nope", {"A": 1})


@pytest.mark.unit
def test_standing_keeps_the_flag_whatever_later_reads_say() -> None:
    users = {"A": 1200, "B": 800}
    loud = srm.srm_check(users, SHARES)
    assert loud["flagged"]
    record = {"flagged_at": "2026-01-01T00:00:00+00:00", "flag": srm.flag_record(loud, users, users)}
    calm = srm.srm_check({"A": 1000, "B": 1000}, SHARES)  # e.g. after the traffic recovered
    assert not calm["flagged"]
    out = srm.standing(calm, record)
    assert out["flagged"] and out["flagged_at"] == record["flagged_at"] and out["p_value"] == loud["p_value"]
    assert out["e_value"] == calm["e_value"] and out["flag"]["counted"] == users  # the current read's figures stay
    assert srm.standing(calm, None)["flagged"] is False and srm.standing(calm, None)["flag"] is None
    assert srm.since_reset({"A": 1200, "B": 800}, {"A": 1000, "B": 900}) == {"A": 200, "B": 0}
    assert srm.since_reset(users, None) == users


# -- migration 0008 -------------------------------------------------------------------------------


def test_migration_0008_goes_up_and_down(store: ExperimentStore, flags: SrmStore) -> None:
    store.activate_experiment("e1")
    pid = store.record_prediction("e1", "user-1", "A", "v3.0", "long", 0.7)
    flags.flag("e1", {"p_value": 1e-4})
    assert SCHEMA_VERSION == "0008" and "srm_flags" in tables(store.engine)
    assert alembic(store.engine, "downgrade", "0007") == "0007"
    assert "srm_flags" not in tables(store.engine)
    assert store.get_experiment("e1")["name"] == "n" and store.get_prediction(pid)["experiment_id"] == "e1"
    assert alembic(store.engine, "upgrade", "head") == "0008"
    assert flags.get("e1") is None
    assert flags.flag("e1", {"p_value": 1e-4})["flag"] == {"p_value": 1e-4}
