"""A promoter's action in one transaction (issue 29), on SQLite and PostgreSQL: a switch with its probation, the
probation's anchor and the audit row, or a probation's end with the switch back and its audit row, is written
whole or not at all: a failure injected at any step (the database refusing the audit row's INSERT, the anchor,
the probation update) leaves the active version, the policy, the anchor and the audit trail as they were."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, update

from experiments import AnchorStore, Conflict, ExperimentStore, Invalid, PromotionStore
from experiments.records import utcnow
from experiments.schema import promotion_lease
from tests.unit.test_store_promotion import BAR, policy

pytest_plugins = ["tests.conftest_pg"]


@pytest.fixture
def ps(store: ExperimentStore) -> PromotionStore:
    return PromotionStore(store)


@contextmanager
def failing(store: ExperimentStore, statement: str) -> Iterator[None]:
    """The database fails every statement that starts with `statement` (e.g. the audit row's INSERT)."""

    def fail(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        if sql.lstrip().startswith(statement):
            raise RuntimeError(f"injected failure: {statement}")

    event.listen(store.engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(store.engine, "before_cursor_execute", fail)


def promote(ps: PromotionStore, store: ExperimentStore, also: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """v3.2 replaces v3.1, its probation's anchor written in the same transaction unless `also` is given."""
    anchor = functools.partial(AnchorStore(store).start, "v3.1", "v3.2", "*", 0.01, {"bars": 0}, 1, BAR)
    return ps.promote("v3.2", "v3.1", BAR, mode="auto", state="b_better", reason="b ahead", figures={"n": 1},
                      also=also or anchor)  # fmt: skip


def unchanged(ps: PromotionStore, store: ExperimentStore, active: str, probation: str | None,
              actions: list[str], mode: str = "auto") -> None:  # fmt: skip
    """Nothing of a failed action was kept: the active version, the policy, the anchor and the audit trail."""
    assert store.get_active_version() == active
    got = ps.get_policy("v3.2")
    assert got is not None and (got["probation_from_version"], got["mode"]) == (probation, mode)
    assert [d["action"] for d in ps.decisions()] == actions
    assert (AnchorStore(store).get("v3.1", "v3.2") is not None) == bool(actions)


def test_a_switch_is_written_whole_or_not_at_all(ps: PromotionStore, store: ExperimentStore) -> None:
    policy(ps)
    store.set_active_version("v3.1")
    with failing(store, "INSERT INTO promotion_decisions"), pytest.raises(RuntimeError, match="injected"):
        promote(ps, store)  # the last step fails: the switch, the probation and the anchor before it are undone
    unchanged(ps, store, "v3.1", None, [])

    def broken_anchor(conn: Any) -> None:
        raise RuntimeError("injected failure: the anchor")

    with pytest.raises(RuntimeError, match="the anchor"):
        promote(ps, store, also=broken_anchor)
    unchanged(ps, store, "v3.1", None, [])
    with failing(store, "UPDATE promotion_policy"), pytest.raises(RuntimeError, match="injected"):
        promote(ps, store)  # the step after the switch fails
    unchanged(ps, store, "v3.1", None, [])
    row = promote(ps, store)
    assert (row["action"], row["challenger"], row["incumbent"], row["figures"]) == ("switch", "v3.2", "v3.1", {"n": 1})
    unchanged(ps, store, "v3.2", "v3.1", ["switch"])
    assert ps.get_policy("v3.2")["probation_start_bar"] == BAR.isoformat()  # type: ignore[index]
    store.set_active_version("v3.0")  # an admin switched meanwhile
    with pytest.raises(Conflict, match="probation from 'v3.1'"):
        promote(ps, store)  # one probation at a time: refused after its switch was written, so undone
    unchanged(ps, store, "v3.0", "v3.1", ["switch"])


def test_a_switch_is_refused_when_the_policy_changed(ps: PromotionStore, store: ExperimentStore) -> None:
    policy(ps, mode="recommend")  # an admin disarmed it after the promoter read it
    store.set_active_version("v3.1")
    with pytest.raises(Conflict, match="mode 'recommend'"):
        promote(ps, store)
    unchanged(ps, store, "v3.1", None, [], mode="recommend")
    with pytest.raises(Invalid, match="incumbent"):
        ps.promote("v3.2", "v3.2", BAR, mode="auto", state="b_better", reason="r", figures={})
    with pytest.raises(Invalid, match="start_bar"):
        ps.promote("v3.2", "v3.1", "2024", mode="auto", state="b_better", reason="r", figures={})  # type: ignore[arg-type]


def test_a_rollback_is_written_whole_or_not_at_all(ps: PromotionStore, store: ExperimentStore) -> None:
    policy(ps)
    store.set_active_version("v3.1")
    promote(ps, store)

    def rollback() -> dict[str, Any]:
        return ps.finish_probation("rollback", "v3.2", "v3.1", switch_back=True, mode="auto", state="a_better",
                                   reason="a ahead", figures={"n": 2})  # fmt: skip

    with failing(store, "INSERT INTO promotion_decisions"), pytest.raises(RuntimeError, match="injected"):
        rollback()  # the switch back and the probation's end are undone with the audit row
    unchanged(ps, store, "v3.2", "v3.1", ["switch"])
    row = rollback()
    assert (row["action"], row["incumbent"], row["state"]) == ("rollback", "v3.1", "a_better")
    unchanged(ps, store, "v3.1", None, ["rollback", "switch"], mode="recommend")  # re-armed: no second try
    assert ps.get_policy("v3.2")["min_effect_r"] == 0.05  # type: ignore[index]  # its limits kept
    with pytest.raises(Conflict, match="no probation"):
        rollback()
    unchanged(ps, store, "v3.1", None, ["rollback", "switch"], mode="recommend")
    with pytest.raises(Invalid, match="rollback or confirm"):
        ps.finish_probation("switch", "v3.2", "v3.1", switch_back=False, mode="auto", state="s", reason="r",
                            figures={})  # fmt: skip


def test_a_confirmation_keeps_the_switch(ps: PromotionStore, store: ExperimentStore) -> None:
    policy(ps)
    store.set_active_version("v3.1")
    promote(ps, store)
    with failing(store, "INSERT INTO promotion_decisions"), pytest.raises(RuntimeError, match="injected"):
        ps.finish_probation("confirm", "v3.2", "v3.1", switch_back=False, mode="auto", state="collecting",
                            reason="probation passed", figures={})  # fmt: skip
    unchanged(ps, store, "v3.2", "v3.1", ["switch"])
    ps.finish_probation("confirm", "v3.2", "v3.1", switch_back=False, mode="auto", state="collecting",
                        reason="probation passed", figures={})  # fmt: skip
    unchanged(ps, store, "v3.2", None, ["confirm", "switch"])


def test_an_action_under_a_lost_lease_writes_nothing_also_from_a_coroutine(
    ps: PromotionStore, store: ExperimentStore
) -> None:
    """The lease taken by `acting` (in a thread) fences the writes the coroutine makes through asyncio.to_thread."""
    policy(ps)
    store.set_active_version("v3.1")

    async def act() -> None:
        async with ps.acting(ttl=30) as acting:
            assert acting
            assert ps.lease()["holder"] != "other:2:new"  # type: ignore[index]
            async with ps.acting() as again:
                assert again is False  # not re-entrant
            with store.engine.begin() as conn:  # stalled past its ttl: another worker took the lease over
                conn.execute(update(promotion_lease).values(holder="other:2:new"))
            await asyncio.to_thread(promote, ps, store)

    with pytest.raises(Conflict, match="lease"):
        asyncio.run(act())
    unchanged(ps, store, "v3.1", None, [])
    assert ps.lease()["holder"] == "other:2:new"  # type: ignore[index]  # not released: not ours

    async def won() -> dict[str, Any]:
        with store.engine.begin() as conn:
            conn.execute(delete(promotion_lease))
        async with ps.acting() as acting:
            assert acting
            return await asyncio.to_thread(promote, ps, store)

    assert asyncio.run(won())["action"] == "switch"
    assert ps.lease() is None  # released in a thread at the end of the block
    unchanged(ps, store, "v3.2", "v3.1", ["switch"])
    with ps.try_act(ttl=30) as acting:
        assert acting
        with store.engine.begin() as conn:
            conn.execute(update(promotion_lease).values(holder="other:3:new"))
        with pytest.raises(Conflict, match="lease"):
            ps.finish_probation("rollback", "v3.2", "v3.1", switch_back=True, mode="auto", state="a_better",
                                reason="a ahead", figures={})  # fmt: skip
    unchanged(ps, store, "v3.2", "v3.1", ["switch"])


def test_a_probation_starts_with_its_switch_survives_a_policy_update_and_ends_once(
    ps: PromotionStore, store: ExperimentStore
) -> None:
    policy(ps)
    naive_bar = BAR.replace(tzinfo=None)  # naive times are UTC
    ps.promote("v3.2", "v3.1", naive_bar, mode="auto", state="b_better", reason="b ahead", figures={})
    started = ps.get_policy("v3.2")
    assert started is not None and started["probation_from_version"] == "v3.1"
    assert started["probation_start_bar"] == BAR.isoformat()
    assert abs(datetime.fromisoformat(started["probation_started_at"]) - utcnow()) < timedelta(minutes=1)
    assert ps.decisions()[0]["at"] == started["probation_started_at"]  # the switch and its probation: one time
    updated = ps.set_policy("v3.2", "recommend", 0.2, 10.0, 50)  # the admin edits during probation
    assert updated["probation_from_version"] == "v3.1"
    assert updated["probation_started_at"] == started["probation_started_at"]
    with pytest.raises(Conflict, match="no probation of 'v3.2' from 'v3.0'"):  # not the probation that runs
        ps.finish_probation("confirm", "v3.2", "v3.0", switch_back=False, mode="recommend", state="s", reason="r",
                            figures={})  # fmt: skip
    ps.finish_probation("confirm", "v3.2", "v3.1", switch_back=False, mode="recommend", state="collecting",
                        reason="probation passed", figures={})  # fmt: skip
    ended = ps.get_policy("v3.2")
    assert ended is not None and ended["mode"] == "recommend" and ended["min_effect_r"] == 0.2
    assert (ended["probation_from_version"], ended["probation_started_at"], ended["probation_start_bar"]) == (
        None, None, None
    )  # fmt: skip
    assert store.get_active_version() == "v3.2" and [d["action"] for d in ps.decisions()] == ["confirm", "switch"]
