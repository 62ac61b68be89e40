"""Exact counts and single-winner guarantees under threads and processes, SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, func, select, text, update

from experiments import Conflict, ExperimentStore
from experiments.db import WRITE_OPTION, is_sqlite
from experiments.schema import experiments, predictions

pytest_plugins = ["tests.conftest_pg"]

EID = "race"
THREADS, PER_THREAD = 8, 250
PROCESSES, PER_PROCESS = 3, 150

MakeStore = Callable[[], ExperimentStore]


def _start(store: ExperimentStore) -> None:
    store.create_experiment(EID, "race", "", "v3.0", "v3.1", 0.5)
    store.activate_experiment(EID)


def _record_many(store: ExperimentStore, worker: int, n: int) -> int:
    """Record n predictions alternating variants; returns how many were acknowledged."""
    for i in range(n):
        variant = "AB"[i % 2]
        store.record_prediction(EID, f"w{worker}-{i}", variant, f"v3.{variant == 'B':d}", "long", 0.5)
    return n


def _row_count(store: ExperimentStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())


def _metrics_count(store: ExperimentStore) -> int:
    variants = store.metrics(EID)["variants"]
    return int(variants["A"]["metrics"]["count"] + variants["B"]["metrics"]["count"])


def test_threads_record_exact_counts(store: ExperimentStore) -> None:
    _start(store)
    with ThreadPoolExecutor(THREADS) as pool:
        done = sum(pool.map(lambda w: _record_many(store, w, PER_THREAD), range(THREADS)))
    assert done == THREADS * PER_THREAD == 2000
    assert _row_count(store) == 2000
    assert _metrics_count(store) == 2000
    assert store.metrics(EID)["variants"]["A"]["metrics"]["count"] == 1000


def _process_worker(url: str, worker: int, n: int) -> int:
    """Child process: its own engine (as a BentoML worker), records n predictions."""
    store = ExperimentStore(url)
    try:
        return _record_many(store, worker, n)
    finally:
        store.close()


def test_processes_record_exact_counts(store: ExperimentStore) -> None:
    _start(store)
    ctx = mp.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        done = sum(pool.starmap(_process_worker, [(store.url, w, PER_PROCESS) for w in range(PROCESSES)]))
    assert done == PROCESSES * PER_PROCESS
    assert _row_count(store) == PROCESSES * PER_PROCESS
    assert _metrics_count(store) == PROCESSES * PER_PROCESS


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at the same instant; each result is the return value or the exception."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # collected and asserted by the caller
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_concurrent_activations_single_winner(make_store: MakeStore) -> None:
    """Two workers (separate engines) activate different experiments at once: exactly one wins."""
    one, two = make_store(), make_store()
    for round_ in range(8):
        e1, e2 = f"r{round_}-a", f"r{round_}-b"
        one.create_experiment(e1, "n", "", "v3.0", "v3.1")
        one.create_experiment(e2, "n", "", "v3.0", "v3.1")
        results = _race([lambda a=e1: one.activate_experiment(a), lambda b=e2: two.activate_experiment(b)])
        winners = [r for r in results if isinstance(r, dict)]
        assert len(winners) == 1, results
        assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict)), results
        assert one.active_experiment()["experiment_id"] == winners[0]["experiment_id"]  # type: ignore[index]
        one.stop_experiment(winners[0]["experiment_id"])


def _wait_until_blocked(store: ExperimentStore, holder: Connection) -> None:
    """Return once another session waits on holder's locks (PostgreSQL); on SQLite just pause."""
    if is_sqlite(store.engine):
        time.sleep(0.2)  # the other writer can only proceed after our commit anyway
        return
    holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
    probe = text("SELECT count(*) FROM pg_stat_activity WHERE :h = ANY(pg_blocking_pids(pid))")
    deadline = time.monotonic() + 20
    with store.engine.connect() as watcher:
        while watcher.execute(probe, {"h": holder_pid}).scalar_one() == 0:
            assert time.monotonic() < deadline, "the second activation never blocked"
            watcher.rollback()
            time.sleep(0.02)


def test_activation_blocked_by_uncommitted_activation_conflicts(make_store: MakeStore) -> None:
    """Worker 2 activates while worker 1's activation is not yet committed: worker 2 gets Conflict.

    On PostgreSQL this exercises the partial unique index (the pre-check sees nothing committed);
    on SQLite worker 2 waits for the write lock and then sees the active experiment.
    """
    one, two = make_store(), make_store()
    one.create_experiment("e1", "n", "", "v3.0", "v3.1")
    one.create_experiment("e2", "n", "", "v3.0", "v3.1")
    result: list[Any] = []

    def activate_e2() -> None:
        try:
            result.append(two.activate_experiment("e2"))
        except Exception as exc:  # asserted below
            result.append(exc)

    worker = threading.Thread(target=activate_e2)
    with one.engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            conn.execute(update(experiments).where(experiments.c.experiment_id == "e1").values(status="active"))
            worker.start()
            _wait_until_blocked(one, conn)
    worker.join(timeout=30)
    assert len(result) == 1 and isinstance(result[0], Conflict), result
    expected = "already active" if is_sqlite(two.engine) else "activated concurrently"
    assert expected in str(result[0])
    assert two.active_experiment()["experiment_id"] == "e1"  # type: ignore[index]


def test_concurrent_equal_outcomes_are_idempotent(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    _start(stores[0])
    pid = stores[0].record_prediction(EID, "u", "A", "v3.0", "long", 0.5)
    results = _race([lambda s=s: s.record_outcome(pid, 7.0) for s in stores])
    assert all(isinstance(r, dict) and r["pips"] == 7.0 for r in results), results
    assert sum(r["created"] for r in results) == 1


def test_concurrent_different_outcomes_single_winner(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(4)]
    _start(stores[0])
    pid = stores[0].record_prediction(EID, "u", "A", "v3.0", "long", 0.5)
    results = _race([lambda s=s, i=i: s.record_outcome(pid, float(i + 1)) for i, s in enumerate(stores)])
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1 and winners[0]["created"] is True, results
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict)), results
    assert stores[0].get_prediction(pid)["pips"] == winners[0]["pips"]
