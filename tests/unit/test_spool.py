"""Issue 29, item 12: evaluation rows survive a database that refuses connections (a bounded spool per worker)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from aifx import metrics
from aifx.serving.log_rows import CandleRows
from aifx.serving.outcome_log import OutcomeLog
from aifx.settings import Settings
from experiments import EvaluationStore, ExperimentStore
from experiments.records import BarLog, Candle, Decision
from experiments.schema import eval_bars, market_candles
from experiments.spool import Spool

pytestmark = pytest.mark.unit
pytest_plugins = ["tests.conftest_pg"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def bar(i: int) -> BarLog:
    return BarLog("EURUSD", "1h", T0 + i * H, 1.1, 0.001, 0.0001, (Decision("v3.1", "long", 0.7, 0.6, 1),))


def candles(i: int) -> CandleRows:
    return CandleRows("EURUSD", "1h", (Candle(T0 + i * H, 1.1, 1.101, 1.099, 1.1),), "predict")


def dropped() -> float:
    return sum(metrics.EVAL_DROPPED.labels(reason=r)._value.get() for r in metrics.EVAL_DROP_REASONS)


def counts(store: ExperimentStore) -> tuple[int, int]:
    with store.engine.connect() as conn:
        bars = conn.execute(select(func.count()).select_from(eval_bars)).scalar()
        stored = conn.execute(select(func.count()).select_from(market_candles)).scalar()
    return int(bars or 0), int(stored or 0)


def refused(*_args: Any, **_kwargs: Any) -> Any:
    raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))


def wait_for(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_spool_keeps_order_bound_and_survives_a_restart(tmp_path) -> None:
    spool = Spool(tmp_path / "w", max_bytes=2_000)
    assert spool.put([1, 2]) and spool.put([3])
    assert not spool.put(list(range(1_000)))  # beyond the bound: refused, the caller counts it
    assert oct((tmp_path / "w").stat().st_mode & 0o777) == "0o700"
    again = Spool(tmp_path / "w", max_bytes=2_000)  # a restarted worker finds its predecessor's batches
    assert again.pending()[0] == 2
    seen: list[list[int]] = []
    assert again.replay(seen.append) == 3 and seen == [[1, 2], [3]] and again.pending() == (0, 0)


def test_a_failing_replay_keeps_the_batch(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.put(["a"])
    with pytest.raises(OperationalError):
        spool.replay(refused)
    assert spool.pending()[0] == 1
    (tmp_path / "000000000099.tmp").write_bytes(b"half")  # a write cut by SIGKILL is ignored
    assert Spool(tmp_path, max_bytes=10_000).pending()[0] == 1 and not (tmp_path / "000000000099.tmp").exists()


def test_rows_of_an_outage_are_written_when_the_database_answers(store: ExperimentStore, tmp_path, monkeypatch):
    """The database refuses connections: every bar and candle is spooled, none dropped, all written after."""
    store.ensure_schema()
    ev = EvaluationStore(store)
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    log = OutcomeLog(Settings(), ev, dict, spool)
    log.backoff.first_s, log.backoff.max_s = 0.05, 0.2
    before = dropped()
    real_log, real_candles = ev.log, ev.add_candles
    monkeypatch.setattr(ev, "log", refused)
    monkeypatch.setattr(ev, "add_candles", refused)
    for i in range(300):
        log.writer.put(candles(i))
        log.writer.put(bar(i))
        if i % 50 == 0:
            time.sleep(0.3)  # several flushes during the outage
    wait_for(lambda: log.writer.pending() == 0)
    assert spool.pending()[0] > 1 and counts(store) == (0, 0)
    monkeypatch.setattr(ev, "log", real_log)
    monkeypatch.setattr(ev, "add_candles", real_candles)
    wait_for(lambda: spool.pending()[0] == 0)  # replayed by the idle writer, no new traffic needed
    assert counts(store) == (300, 300)
    assert dropped() == before
    assert log.close()


def test_beyond_the_spool_bound_rows_are_dropped_and_counted(store: ExperimentStore, tmp_path, monkeypatch):
    ev = EvaluationStore(store)
    log = OutcomeLog(Settings(), ev, dict, Spool(tmp_path / "small", max_bytes=1_000))
    monkeypatch.setattr(ev, "log", refused)
    before = dropped()
    for i in range(200):
        log.writer.put(bar(i))
    wait_for(lambda: log.writer.pending() == 0)
    assert dropped() > before
    log.writer.close(timeout=1)
