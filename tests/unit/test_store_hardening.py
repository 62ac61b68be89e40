"""Store hardening (issue 11): bounded pips, corrections, outcomes after stop, idempotency,
retention and erasure, SQL-aggregate metrics, Alembic migrations and a user without DDL rights."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from experiments import Conflict, ExperimentStore, Invalid, NotFound, SchemaMismatch, compare
from experiments.records import utcnow
from experiments.schema import MAX_ABS_PIPS, SCHEMA_VERSION, experiments, outcomes

pytest_plugins = ["tests.conftest_pg"]
MakeStore = Callable[[], ExperimentStore]
EID = "hard"


def _active(store: ExperimentStore) -> None:
    store.create_experiment(EID, "n", "d", "v3.0", "v3.1")
    store.activate_experiment(EID)


def _predict(store: ExperimentStore, user: str = "u", key: str | None = None) -> str:
    return store.record_prediction(EID, user, "A", "v3.0", "long", 0.6, idempotency_key=key)


@pytest.mark.parametrize("pips", [1e200, -1e308, MAX_ABS_PIPS + 0.5, float("inf")])
def test_pips_beyond_the_bound_are_refused(store: ExperimentStore, pips: float) -> None:
    _active(store)
    with pytest.raises(Invalid, match="between"):
        store.record_outcome(_predict(store), pips)


def test_the_database_refuses_unbounded_pips_too(store: ExperimentStore) -> None:
    _active(store)
    pid = _predict(store)
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(outcomes.insert().values(prediction_id=pid, pips=1e200, recorded_at=utcnow()))


def test_metrics_stay_finite_at_the_bound(store: ExperimentStore) -> None:
    _active(store)
    for i in range(40):
        pid = store.record_prediction(EID, f"u{i}", "AB"[i % 2], ("v3.0", "v3.1")[i % 2], "long", 0.6)
        store.record_outcome(pid, MAX_ABS_PIPS if i % 3 else -MAX_ABS_PIPS)
    comparison = store.metrics(EID)["comparison"]
    numbers = [x for test in ("pips", "hit_rate") for x in comparison[test].values() if isinstance(x, float)]
    assert numbers and all(np.isfinite(numbers))
    assert all(np.isfinite(comparison["pips"]["ci95"]))


def test_metrics_from_sql_aggregates_equal_the_raw_statistics(store: ExperimentStore) -> None:
    _active(store)
    rng = np.random.default_rng(4)
    raw: dict[str, list[float]] = {"A": [], "B": []}
    for i in range(60):
        variant = "AB"[i % 2]
        pips = float(np.round(rng.normal(3.0 if variant == "B" else 0.0, 8.0), 3))
        pid = store.record_prediction(EID, f"u{i}", variant, {"A": "v3.0", "B": "v3.1"}[variant], "long", 0.6)
        store.record_outcome(pid, pips)
        raw[variant].append(pips)
    got, want = store.metrics(EID)["comparison"], compare(raw["A"], raw["B"])
    for test, field in (("pips", "t"), ("pips", "p_value"), ("pips", "df"), ("hit_rate", "z"), ("pips", "diff")):
        assert got[test][field] == pytest.approx(want[test][field], rel=1e-9), (test, field)
    assert got["winner"] == want["winner"]


def test_an_admin_can_correct_an_outcome(store: ExperimentStore) -> None:
    _active(store)
    pid = _predict(store)
    with pytest.raises(NotFound, match="no outcome"):
        store.correct_outcome(pid, 5.0)
    first = store.record_outcome(pid, 50.0)
    fixed = store.correct_outcome(pid, -5.0)
    assert fixed["pips"] == -5.0 and fixed["recorded_at"] == first["recorded_at"] and fixed["corrected_at"]
    assert store.get_prediction(pid)["pips"] == -5.0
    with pytest.raises(Conflict):
        store.record_outcome(pid, 50.0)  # the corrected value stands


def test_outcomes_after_stop_are_taken_for_the_grace_period_only(store: ExperimentStore) -> None:
    _active(store)
    late, later = _predict(store, "late"), _predict(store, "later")
    store.stop_experiment(EID)
    assert store.record_outcome(late, 2.0)["created"] is True  # within the grace period
    with store.engine.begin() as conn:
        conn.execute(update(experiments).values(stopped_at=utcnow() - timedelta(hours=25)))
    with pytest.raises(Conflict, match="accepted for 24 h after the stop"):
        store.record_outcome(later, 2.0)


def test_a_retry_with_the_same_idempotency_key_counts_once(make_store: MakeStore) -> None:
    one, two = make_store(), make_store()
    _active(one)
    key = str(uuid.uuid4())
    first = _predict(one, "retry-user", key)
    assert _predict(two, "retry-user", key) == first  # another worker, same key: the same prediction
    assert one.metrics(EID)["variants"]["A"]["metrics"]["count"] == 1
    with pytest.raises(Conflict, match="Idempotency-Key"):
        _predict(one, "someone-else", key)
    with pytest.raises(Invalid, match="Idempotency-Key"):
        _predict(one, "u", "bad key\n")


def test_retention_and_per_user_erasure(store: ExperimentStore) -> None:
    _active(store)
    old, mine, other = _predict(store, "old"), _predict(store, "me"), _predict(store, "other")
    store.record_outcome(mine, 1.0)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE predictions SET created_at = :t WHERE prediction_id = :p"),
                     {"t": utcnow() - timedelta(days=40), "p": old})  # fmt: skip
    assert store.purge_predictions(timedelta(days=30)) == 1
    assert store.delete_user("me") == 1
    for gone in (old, mine):
        with pytest.raises(NotFound):
            store.get_prediction(gone)
    assert store.get_prediction(other)["user_id"] == "other"


@pytest.mark.parametrize("user", ["nul\x00user", "tab\tuser", "", "x" * 257])
def test_user_ids_must_be_printable_and_bounded(store: ExperimentStore, user: str) -> None:
    _active(store)
    with pytest.raises(Invalid, match="user_id"):
        _predict(store, user)


def test_a_store_opens_no_connection_until_used() -> None:
    store = ExperimentStore("postgresql+psycopg://postgres@127.0.0.1:1/none", auto_migrate=False)
    store.close()  # nothing was connected, nothing to fail


def test_without_auto_migrate_an_unmigrated_database_is_refused(db_url: str) -> None:
    store = ExperimentStore(db_url, auto_migrate=False)
    with pytest.raises(SchemaMismatch, match="python -m experiments migrate"):
        store.list_experiments()
    ExperimentStore(db_url).ensure_schema()  # what `make migrate` does
    assert store.list_experiments() == [] and store.schema_version() == SCHEMA_VERSION


LEGACY_DDL = [
    "CREATE TABLE aifx_schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, updated_at TIMESTAMP)",
    "INSERT INTO aifx_schema_version VALUES (1, 1, CURRENT_TIMESTAMP)",
    "CREATE TABLE experiments (experiment_id VARCHAR(64) PRIMARY KEY, name VARCHAR(200) NOT NULL, "
    "description TEXT NOT NULL, variant_a VARCHAR(64) NOT NULL, variant_b VARCHAR(64) NOT NULL, "
    "traffic_split FLOAT NOT NULL, salt VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, "
    "created_at TIMESTAMP NOT NULL, activated_at TIMESTAMP, stopped_at TIMESTAMP)",
    "CREATE TABLE predictions (prediction_id VARCHAR(36) PRIMARY KEY, experiment_id VARCHAR(64) NOT NULL "
    "REFERENCES experiments (experiment_id) ON DELETE CASCADE, user_id VARCHAR(256) NOT NULL, "
    "variant VARCHAR(1) NOT NULL, model_version VARCHAR(64) NOT NULL, signal VARCHAR(8) NOT NULL, "
    "confidence FLOAT NOT NULL, stage1_prob FLOAT, stage2_prob FLOAT, created_at TIMESTAMP NOT NULL)",
    "CREATE TABLE outcomes (prediction_id VARCHAR(36) PRIMARY KEY REFERENCES predictions (prediction_id) "
    "ON DELETE CASCADE, pips FLOAT NOT NULL, recorded_at TIMESTAMP NOT NULL)",
    "CREATE TABLE settings (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL, updated_at TIMESTAMP NOT NULL)",
    "INSERT INTO experiments VALUES ('old', 'n', '', 'v3.0', 'v3.1', 0.5, 'old', 'active', CURRENT_TIMESTAMP, "
    "CURRENT_TIMESTAMP, NULL)",
    "INSERT INTO predictions VALUES ('p1', 'old', 'u1', 'A', 'v3.0', 'long', 0.6, 0.7, 0.8, CURRENT_TIMESTAMP)",
    "INSERT INTO predictions VALUES ('p2', 'old', 'u2', 'A', 'v3.0', 'long', 0.6, 0.7, 0.8, CURRENT_TIMESTAMP)",
    "INSERT INTO outcomes VALUES ('p1', 12.5, CURRENT_TIMESTAMP)",
    "INSERT INTO outcomes VALUES ('p2', 1e200, CURRENT_TIMESTAMP)",
    "INSERT INTO settings VALUES ('active_version', 'v3.0', CURRENT_TIMESTAMP)",
]


def test_a_database_of_the_pre_migration_code_is_adopted(db_url: str) -> None:
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.begin() as conn:
        for statement in LEGACY_DDL:
            conn.execute(text(statement))
    engine.dispose()
    store = ExperimentStore(db_url)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.get_active_version() == "v3.0" and store.active_experiment()["salt"] == "old"  # type: ignore[index]
    assert store.get_prediction("p1")["pips"] == 12.5
    assert store.get_prediction("p2")["pips"] is None  # the forged 1e200 outcome did not survive


@pytest.mark.postgres
def test_the_service_role_needs_no_ddl_rights(pg_url: str) -> None:
    ExperimentStore(pg_url).ensure_schema()  # the migration, run by the owner
    schema = make_url(pg_url).query["options"].split("=", 1)[1]
    role = f"aifx_svc_{uuid.uuid4().hex[:8]}"
    owner = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}'))
        conn.execute(text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {role}'))
    service_url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    try:
        service = ExperimentStore(service_url, auto_migrate=False)
        service.create_experiment("ddl-free", "n", "d", "v3.0", "v3.1")
        service.set_active_version("v3.1")
        assert service.get_active_version() == "v3.1"
        with pytest.raises(Exception, match="permission denied"), service.engine.begin() as conn:
            conn.execute(text("CREATE TABLE nope (id INTEGER)"))
        service.close()
    finally:
        with owner.connect() as conn:
            conn.execute(text(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}'))
            conn.execute(text(f'REVOKE ALL ON SCHEMA "{schema}" FROM {role}'))
            conn.execute(text(f"DROP ROLE {role}"))
        owner.dispose()


def test_the_migrate_command_says_what_is_wrong(tmp_path, capsys) -> None:
    from experiments.__main__ import main

    assert main(["migrate", "--url", "mysql://x/y"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err
    assert main(["migrate", "--url", "postgresql+psycopg://postgres@127.0.0.1:1/none"]) == 1
    assert "refused or did not answer" in capsys.readouterr().err
    assert main(["migrate", "--url", f"sqlite:///{tmp_path / 'm.db'}"]) == 0
    assert f"revision {SCHEMA_VERSION}" in capsys.readouterr().out


def test_the_wait_command_returns_once_another_process_migrated(db_url: str, capsys) -> None:
    """deploy/k8s/: the API pods' init container waits for the migration Job (`python -m experiments wait`)."""
    import threading

    from experiments.__main__ import main

    assert main(["wait", "--url", db_url, "--timeout", "0.5"]) == 1
    assert "gave up after 0.5 s" in capsys.readouterr().err
    migrated = threading.Timer(1.0, lambda: ExperimentStore(db_url).ensure_schema())  # the Job, a second later
    migrated.start()
    try:
        assert main(["wait", "--url", db_url, "--timeout", "30"]) == 0
    finally:
        migrated.join()
    out = capsys.readouterr().out
    assert out.startswith("waiting for the schema: database schema is at revision none")  # said once, not per check
    assert out.count("waiting") == 1 and out.endswith(f"database at revision {SCHEMA_VERSION}\n")
    assert main(["wait", "--url", "mysql://x/y"]) == 2
