"""Issue 29, item 8: a batch's experiment predictions are one transaction; an abandoned request records nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from aifx.cache import SharedState
from aifx.serving.ab_tests import ABTests, item_key
from aifx.signal import Decision
from experiments import Abandoned, Assignment, ExperimentStore, KeyReused, Served
from experiments.schema import IDEMPOTENCY_KEY_LEN

pytest_plugins = ["tests.conftest_pg"]
EID = "batch_tx"


@pytest.fixture
def active(store: ExperimentStore) -> ExperimentStore:
    store.create_experiment(EID, "batch", "d", "v3.0", "v3.1", 0.5)
    store.activate_experiment(EID)
    return store


def served(i: int, key: str | None = None, variant: str = "A") -> Served:
    return Served(EID, f"u{i}", variant, "v3.0" if variant == "A" else "v3.1", "long", 0.7, idempotency_key=key)


def count(store: ExperimentStore) -> int:
    return int(
        store.metrics(EID)["variants"]["A"]["metrics"]["count"]
        + store.metrics(EID)["variants"]["B"]["metrics"]["count"]
    )


def test_every_item_in_its_place(active: ExperimentStore) -> None:
    items = [served(0, "k:0"), served(1, "k:1"), served(2, variant="B"), Served(EID, "u3", "A", "v3.1", "long", 0.7)]
    out = active.record_predictions(items)
    assert all(isinstance(x, str) for x in out[:3]) and type(out[3]).__name__ == "Invalid"
    again = active.record_predictions([served(0, "k:0"), served(1, "k:1"), served(9, "k:0")])
    assert again[:2] == out[:2] and isinstance(again[2], KeyReused)
    assert count(active) == 3


def test_an_abandoned_batch_records_nothing(active: ExperimentStore) -> None:
    gone = threading.Event()
    gone.set()
    with pytest.raises(Abandoned):
        active.record_predictions([served(i) for i in range(20)], gone)
    assert count(active) == 0


def test_a_cancelled_request_stops_recording(active: ExperimentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request is cancelled (BentoML's timeout) while its thread records: the transaction rolls back."""
    from experiments import recording

    real = recording._prepare

    def slow(*args: Any) -> Any:
        time.sleep(0.02)
        return real(*args)

    monkeypatch.setattr(recording, "_prepare", slow)

    async def scenario() -> None:
        ab = ABTests(active, SharedState("active", active.active_experiment, 0.5, 1.0))
        assigned = Assignment(EID, "A", "v3.0")
        decision = Decision("long", 0.7, 0.8, 0.7, "stage2")
        items = {i: (assigned, f"u{i}", decision, None) for i in range(100)}
        task = asyncio.create_task(ab.record_many(items))
        await asyncio.sleep(0.2)  # ~10 of 100 rows prepared
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(2.5)  # the thread sees the flag before its next row and rolls back

    asyncio.run(scenario())
    assert count(active) == 0


def test_batch_keys_fit_every_item() -> None:
    for length in (1, 100, 126, 127, 128):
        base = "k" * length
        keys = [item_key(base, i) for i in (0, 9, 99)]
        assert all(k is not None and len(k) <= IDEMPOTENCY_KEY_LEN for k in keys) and len(set(keys)) == 3
        assert item_key(base, 5) == item_key(base, 5)  # a retry derives the same key
    assert item_key("short", 3) == "short:3" and item_key(None, 3) is None
