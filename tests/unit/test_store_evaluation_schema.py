"""The evaluation log (issue 12) on SQLite and PostgreSQL: retention, and migration 0003 up and down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text, update

from experiments import BarLog, EvaluationStore, ExperimentStore
from experiments.records import as_utc, utcnow
from experiments.schema import SCHEMA_VERSION, eval_bars, market_candles, metadata
from tests.alembic_steps import alembic, tables
from tests.unit.evaluation_rows import bar, candle, dec, decisions_of

pytest_plugins = ["tests.conftest_pg"]

EVAL_TABLES = {"eval_bars", "eval_decisions", "market_candles"}


@pytest.fixture
def ev(store: ExperimentStore) -> EvaluationStore:
    return EvaluationStore(store)


# -- retention -------------------------------------------------------------------------------------


def test_purge_deletes_old_bars_with_their_decisions_and_old_candles(
    ev: EvaluationStore, store: ExperimentStore
) -> None:
    now = utcnow().replace(microsecond=0)
    ev.log([BarLog("EURUSD", "1h", now - timedelta(days=d), 1.1, 0.001, 0.0001, (dec("a"), dec("b")))
            for d in (100, 95, 1)])  # fmt: skip
    ev.add_candles("EURUSD", "1h", [candle(now - timedelta(days=d)) for d in (100, 95, 1)], "predict")
    with store.engine.begin() as conn:
        conn.execute(update(eval_bars).values(created_at=eval_bars.c.bar_time))
        # candles go by arrival (a replay of old market data is recent): these arrived when they are timed
        conn.execute(update(market_candles).values(received_at=market_candles.c.ts))
    assert ev.purge(timedelta(days=90)) == {"bars": 2, "candles": 2}
    assert [t for t, _ in decisions_of(store)] == [now - timedelta(days=1)] * 2
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM eval_decisions")).scalar_one() == 2
        assert conn.execute(text("SELECT count(*) FROM market_candles")).scalar_one() == 1
    assert ev.purge(timedelta(days=90)) == {"bars": 0, "candles": 0}


def test_the_store_opens_no_connection_until_used() -> None:
    store = ExperimentStore("postgresql+psycopg://postgres@127.0.0.1:1/none", auto_migrate=False)
    EvaluationStore(store)
    store.close()


# -- migration 0003 ------------------------------------------------------------------------------


def test_migration_0003_goes_up_and_down(store: ExperimentStore, ev: EvaluationStore) -> None:
    store.create_experiment("kept", "n", "d", "v3.0", "v3.1")
    ev.log([bar(0, dec())])
    assert SCHEMA_VERSION == "0008" and EVAL_TABLES <= tables(store.engine)
    assert alembic(store.engine, "downgrade", "0002") == "0002"
    assert not EVAL_TABLES & tables(store.engine)
    assert store.get_experiment("kept")["name"] == "n"  # the experiment tables are untouched
    assert alembic(store.engine, "upgrade", "head") == "0008"
    assert EVAL_TABLES <= tables(store.engine) and ev.pending_backlog() == (0, None)
    ev.log([bar(0, dec())])
    assert ev.pending_backlog()[0] == 1


def test_the_migrations_build_exactly_the_tables_of_schema_py(store: ExperimentStore) -> None:
    store.ensure_schema()
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_sqlite_plain_statements_store_exactly_what_sqlalchemys_statements_store(tmp_path, monkeypatch):
    """The SQLite write path skips SQLAlchemy's per-row work; the stored text is the same, row for row."""
    import sqlite3

    from experiments import eval_log

    monkeypatch.setattr(eval_log, "utcnow", lambda: datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
    batches = [
        [bar(i, dec("v3.1", "long", served=1), dec("v3.0", "hold", 0.2)) for i in range(700)],  # two chunks
        [bar(i, dec("v3.1", "short", served=2), dec("v3.2", "long", served=0)) for i in range(650, 760)],
    ]

    def sqlalchemy_bars(conn, rows):
        done = conn.execute(eval_log._insert_bars(True), rows)
        return {(p, tf, as_utc(t)): (int(i), "pending") for i, p, tf, t in done}

    def sqlalchemy_decisions(conn, rows):
        conn.execute(eval_log._upsert_decisions(True), rows)

    def dump(path) -> list[list[tuple]]:
        with sqlite3.connect(path) as db:
            return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("eval_bars", "eval_decisions")]

    plain = EvaluationStore(ExperimentStore(f"sqlite:///{tmp_path}/plain.db"))
    for b in batches:
        plain.log(b)
    monkeypatch.setattr(eval_log, "_sqlite_insert_bars", sqlalchemy_bars)
    monkeypatch.setattr(eval_log, "_sqlite_upsert_decisions", sqlalchemy_decisions)
    reference = EvaluationStore(ExperimentStore(f"sqlite:///{tmp_path}/reference.db"))
    for b in batches:
        reference.log(b)
    bars, decisions = dump(tmp_path / "plain.db")
    assert len(bars) == 760 and len(decisions) == 700 * 2 + 60 * 2 + 50  # the 50 shared bars gain v3.2
    assert [bars, decisions] == dump(tmp_path / "reference.db")
    assert bars[0][3] == "2024-01-01 00:00:00.000000"
    assert next(d for d in decisions if d[:2] == (651, "v3.1"))[5] == 3  # served 1 + 2 on a shared bar


def test_downgrading_0003_and_0002_keeps_every_outcome(store: ExperimentStore) -> None:
    """Issue 29: SQLite rebuilds `predictions` to drop a column; its ON DELETE CASCADE used to empty `outcomes`."""
    from sqlalchemy import text

    store.create_experiment("down", "n", "d", "v3.0", "v3.1")
    store.activate_experiment("down")
    ids = [store.record_prediction("down", f"u{i}", "A", "v3.0", "long", 0.6) for i in range(5)]
    for i, pid in enumerate(ids):
        store.record_outcome(pid, float(i))

    def outcomes() -> list[tuple[str, float]]:
        with store.engine.connect() as conn:
            return sorted((r[0], r[1]) for r in conn.execute(text("SELECT prediction_id, pips FROM outcomes")))

    before = outcomes()
    assert len(before) == 5
    for revision in ("0002", "0001"):
        assert alembic(store.engine, "downgrade", revision) == revision
        assert outcomes() == before, revision
    assert alembic(store.engine, "upgrade", "head") == SCHEMA_VERSION
    assert outcomes() == before


def test_the_retention_purge_deletes_in_bounded_batches(store: ExperimentStore, monkeypatch) -> None:
    """Issue 29, item 9: each batch is its own short transaction; every old row goes, with its outcome."""
    from datetime import timedelta

    from sqlalchemy import text

    from experiments import purge

    store.create_experiment("old", "n", "d", "v3.0", "v3.1")
    store.activate_experiment("old")
    ids = [store.record_prediction("old", f"p{i}", "A", "v3.0", "long", 0.6) for i in range(7)]
    store.record_outcome(ids[0], 1.0)
    transactions: list[int] = []
    real = store._write

    def counted():
        transactions.append(1)
        return real()

    monkeypatch.setattr(store, "_write", counted)
    monkeypatch.setattr(purge, "BATCH_ROWS", 3)
    monkeypatch.setattr(purge.delete_in_batches, "__defaults__", (3, 10_000))
    assert store.purge_predictions(timedelta(seconds=-1)) == 7
    assert len(transactions) == 3  # 3 + 3 + 1
    with real() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM outcomes")).scalar() == 0
