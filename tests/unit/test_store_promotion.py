"""Promotion policies (issue 13) on SQLite and PostgreSQL: policy CRUD and its CHECKs, the audit trail, the
acting lease under concurrency (exactly one actor), and migration 0004 up and down. A switch, its probation
and the audit row in one transaction: tests/unit/test_store_promotion_actions.py."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from experiments import Conflict, ExperimentStore, Invalid, NotFound, PromotionStore
from experiments.records import utcnow
from experiments.schema import SCHEMA_VERSION, promotion_decisions, promotion_lease, promotion_policy
from tests.alembic_steps import alembic, tables

pytest_plugins = ["tests.conftest_pg"]
MakeStore = Callable[[], ExperimentStore]
PROMOTION_TABLES = {"promotion_policy", "promotion_decisions", "promotion_lease"}
BAR = datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def ps(store: ExperimentStore) -> PromotionStore:
    return PromotionStore(store)


def policy(ps: PromotionStore, challenger: str = "v3.2", mode: str = "auto") -> dict[str, Any]:
    return ps.set_policy(challenger, mode, 0.05, 20.0, 500)


def decide(ps: PromotionStore, action: str = "recommend", challenger: str = "v3.2", **figures: Any) -> dict[str, Any]:
    return ps.record_decision(action, challenger, "v3.1", "recommend", "b_better", "b ahead", figures)


# -- policies -------------------------------------------------------------------------------------


def test_a_policy_is_set_read_replaced_and_deleted(ps: PromotionStore) -> None:
    assert ps.get_policy("v3.2") is None and ps.policies() == []
    got = ps.set_policy("v3.2", "recommend", 0.05, 20, 500)
    assert {k: got[k] for k in ("challenger", "mode", "min_effect_r", "max_drawdown_r", "probation_bars")} == {
        "challenger": "v3.2", "mode": "recommend", "min_effect_r": 0.05, "max_drawdown_r": 20.0, "probation_bars": 500
    }  # fmt: skip
    assert got["probation_from_version"] is None and got["probation_started_at"] is None
    assert got["probation_start_bar"] is None and datetime.fromisoformat(got["updated_at"]).tzinfo is not None
    assert ps.get_policy("v3.2") == got
    replaced = ps.set_policy("v3.2", "auto", 0.1, 5.5, np.int64(0))
    assert (replaced["mode"], replaced["min_effect_r"], replaced["max_drawdown_r"]) == ("auto", 0.1, 5.5)
    assert replaced["probation_bars"] == 0 and replaced["updated_at"] >= got["updated_at"]
    policy(ps, "v3.0", "off")
    assert [p["challenger"] for p in ps.policies()] == ["v3.0", "v3.2"]
    ps.delete_policy("v3.2")
    assert ps.get_policy("v3.2") is None and [p["challenger"] for p in ps.policies()] == ["v3.0"]
    with pytest.raises(NotFound, match="v3.2"):
        ps.delete_policy("v3.2")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("v3.2", "on", 0.05, 20.0, 500), "mode"),
        (("v3.2", None, 0.05, 20.0, 500), "mode"),
        (("v3.2", "auto", 0.0, 20.0, 500), "min_effect_r"),
        (("v3.2", "auto", -0.1, 20.0, 500), "min_effect_r"),
        (("v3.2", "auto", float("nan"), 20.0, 500), "min_effect_r"),
        (("v3.2", "auto", "0.1", 20.0, 500), "min_effect_r"),
        (("v3.2", "auto", True, 20.0, 500), "min_effect_r"),
        (("v3.2", "auto", 0.05, 0, 500), "max_drawdown_r"),
        (("v3.2", "auto", 0.05, float("inf"), 500), "max_drawdown_r"),
        (("v3.2", "auto", 0.05, 1e7, 500), "max_drawdown_r"),
        (("v3.2", "auto", 0.05, 20.0, -1), "probation_bars"),
        (("v3.2", "auto", 0.05, 20.0, 1.5), "probation_bars"),
        (("v3.2", "auto", 0.05, 20.0, False), "probation_bars"),
        (("v3.2", "auto", 0.05, 20.0, 10**12), "probation_bars"),
        (("bad version", "auto", 0.05, 20.0, 500), "challenger"),
        (("", "auto", 0.05, 20.0, 500), "challenger"),
    ],
)
def test_bad_policy_values_are_invalid(ps: PromotionStore, args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(Invalid, match=field):
        ps.set_policy(*args)
    assert ps.policies() == []


def test_unknown_challengers(ps: PromotionStore, store: ExperimentStore) -> None:
    audit = {"mode": "auto", "state": "b_better", "reason": "b ahead", "figures": {}}
    with pytest.raises(NotFound, match="no promotion policy"):
        ps.promote("v9", "v3.1", BAR, **audit)
    with pytest.raises(NotFound, match="no promotion policy"):
        ps.finish_probation("rollback", "v9", "v3.1", switch_back=True, **audit)
    assert store.get_active_version() is None and ps.decisions() == []  # neither switch was kept
    with pytest.raises(Invalid, match="challenger"):
        ps.get_policy("v 9")


def _policy_row(**changes: Any) -> dict[str, Any]:
    row = {"challenger": "v3.2", "mode": "auto", "min_effect_r": 0.05, "max_drawdown_r": 20.0,
           "probation_bars": 500, "updated_at": utcnow()}  # fmt: skip
    return {**row, **changes}


@pytest.mark.parametrize(
    "changes",
    [
        {"mode": "sometimes"},
        {"min_effect_r": 0.0},
        {"min_effect_r": -1.0},
        {"min_effect_r": float("nan")},
        {"max_drawdown_r": float("inf")},
        {"max_drawdown_r": -3.0},
        {"probation_bars": -1},
        {"probation_from_version": "v3.1"},  # probation half set
        {"probation_from_version": "v3.1", "probation_started_at": utcnow()},
        {"probation_from_version": "v3.2", "probation_started_at": utcnow(), "probation_start_bar": BAR},
        {"mode": None},
    ],
)
def test_the_database_refuses_bad_policy_rows(store: ExperimentStore, changes: dict[str, Any]) -> None:
    store.ensure_schema()
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(promotion_policy).values(**_policy_row(**changes)))
    with store.engine.begin() as conn:  # the valid row goes in
        conn.execute(insert(promotion_policy).values(**_policy_row()))


@pytest.mark.parametrize(
    ("table", "row"),
    [
        (promotion_decisions, {"action": "hold"}),
        (promotion_decisions, {"mode": "manual"}),
        (promotion_decisions, {"figures": None}),
        (promotion_lease, {"name": "promotion", "holder": "h", "acquired_at": BAR, "expires_at": BAR}),
    ],
)
def test_the_database_refuses_bad_audit_and_lease_rows(store: ExperimentStore, table: Any, row: Any) -> None:
    store.ensure_schema()
    if table is promotion_decisions:
        row = {"at": utcnow(), "action": "switch", "challenger": "v3.2", "incumbent": "v3.1", "mode": "auto",
               "state": "b_better", "reason": "r", "figures": "{}", **row}  # fmt: skip
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(table).values(**row))


# -- audit trail ----------------------------------------------------------------------------------


def test_decisions_come_back_newest_first_with_their_figures(ps: PromotionStore, store: ExperimentStore) -> None:
    assert ps.decisions() == []
    first = decide(ps, "recommend", n_bars=120, mean_diff=0.08, interval=[0.01, 0.15])
    second = decide(ps, "switch", "v3.2", n_bars=130)
    third = decide(ps, "recommend", "v3.0", n_bars=1)
    assert first["figures"] == {"n_bars": 120, "mean_diff": 0.08, "interval": [0.01, 0.15]}
    assert (first["action"], first["challenger"], first["incumbent"], first["mode"], first["state"], first["reason"]) \
        == ("recommend", "v3.2", "v3.1", "recommend", "b_better", "b ahead")  # fmt: skip
    assert [d["id"] for d in ps.decisions()] == [third["id"], second["id"], first["id"]]
    assert ps.decisions()[1] == second
    assert [d["id"] for d in ps.decisions(limit=2)] == [third["id"], second["id"]]
    assert [d["id"] for d in ps.decisions(challenger="v3.2")] == [second["id"], first["id"]]
    old = datetime(2024, 1, 1, tzinfo=UTC)
    with store.engine.begin() as conn:  # spread the rows over days: `since` and the order use `at`
        for days, d in enumerate((third, first, second)):
            conn.execute(update(promotion_decisions).where(promotion_decisions.c.id == d["id"])
                         .values(at=old + timedelta(days=days)))  # fmt: skip
    assert [d["id"] for d in ps.decisions()] == [second["id"], first["id"], third["id"]]
    plus_two = timezone(timedelta(hours=2))
    since = (old + timedelta(days=1)).astimezone(plus_two)
    assert [d["id"] for d in ps.decisions(since=since)] == [second["id"], first["id"]]
    assert ps.decisions()[0]["at"] == (old + timedelta(days=2)).isoformat()
    for bad in (0, -1, 10**6, True, "5"):
        with pytest.raises(Invalid, match="limit"):
            ps.decisions(limit=bad)
    with pytest.raises(Invalid, match="since"):
        ps.decisions(since="2024-01-01")  # type: ignore[arg-type]


def test_figures_are_stored_as_plain_json(ps: PromotionStore) -> None:
    figures = {
        "n": np.int64(7), "mean": np.float64(0.25), "flag": np.bool_(True), "nan": float("nan"),
        "inf": np.float64("inf"), "none": None, "at": BAR, "nested": {"ci": (0.1, float("-inf"))},
    }  # fmt: skip
    got = ps.record_decision("rollback", "v3.2", "v3.1", "auto", "guardrail_breach", "drawdown", figures)
    want = {"n": 7, "mean": 0.25, "flag": True, "nan": None, "inf": None, "none": None,
            "at": BAR.isoformat(), "nested": {"ci": [0.1, None]}}  # fmt: skip
    assert got["figures"] == want and ps.decisions()[0]["figures"] == want


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("hold", "v3.2", "v3.1", "auto", "b_better", "r", {}), "action"),
        (("switch", "v3.2", "v3 1", "auto", "b_better", "r", {}), "incumbent"),
        (("switch", "v3.2", "v3.1", "manual", "b_better", "r", {}), "mode"),
        (("switch", "v3.2", "v3.1", "auto", "", "r", {}), "state"),
        (("switch", "v3.2", "v3.1", "auto", "x" * 65, "r", {}), "state"),
        (("switch", "v3.2", "v3.1", "auto", "b_better", " ", {}), "reason"),
        (("switch", "v3.2", "v3.1", "auto", "b_better", "r", [1, 2]), "figures"),
        (("switch", "v3.2", "v3.1", "auto", "b_better", "r", {1: 2}), "string keys"),
        (("switch", "v3.2", "v3.1", "auto", "b_better", "r", {"x": object()}), "figures.x"),
        (("switch", "v3.2", "v3.1", "auto", "b_better", "r", {"x": "y" * 70_000}), "at most"),
    ],
)
def test_bad_decisions_are_invalid(ps: PromotionStore, args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(Invalid, match=field):
        ps.record_decision(*args)
    assert ps.decisions() == []


# -- the acting lease -----------------------------------------------------------------------------


def _race(stores: list[ExperimentStore]) -> list[bool]:
    """Every store's try_act at the same moment; a winner holds its lease until all callers have tried."""
    n = len(stores)
    start, tried = threading.Barrier(n), threading.Condition()
    results: list[bool | None] = [None] * n
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            ps = PromotionStore(stores[i])
            start.wait(timeout=30)
            with ps.try_act("promotion") as acting:
                with tried:
                    results[i] = acting
                    tried.notify_all()
                    if acting:  # hold the lease while the others try
                        assert tried.wait_for(lambda: all(r is not None for r in results), timeout=60)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert all(r is not None for r in results)
    return [bool(r) for r in results]


def test_of_eight_concurrent_callers_exactly_one_acts(make_store: MakeStore) -> None:
    stores = [make_store() for _ in range(8)]  # one engine each, like workers in several replicas
    stores[0].ensure_schema()
    for _ in range(3):
        assert sum(_race(stores)) == 1
        assert PromotionStore(stores[0]).lease() is None  # released at the end of the block


def test_callers_sharing_one_store_exclude_each_other_too(store: ExperimentStore) -> None:
    store.ensure_schema()
    assert sum(_race([store] * 8)) == 1


def test_a_live_lease_blocks_and_an_expired_one_is_taken_over(ps: PromotionStore, store: ExperimentStore) -> None:
    store.ensure_schema()
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(insert(promotion_lease).values(name="promotion", holder="other:1:crashed", acquired_at=now,
                                                    expires_at=now + timedelta(minutes=5)))  # fmt: skip
    with ps.try_act() as acting:
        assert acting is False
    lease = ps.lease()
    assert lease is not None and lease["holder"] == "other:1:crashed" and lease["expired"] is False
    with store.engine.begin() as conn:  # its holder died: the lease runs out
        conn.execute(update(promotion_lease).values(acquired_at=now - timedelta(minutes=2),
                                                    expires_at=now - timedelta(minutes=1)))  # fmt: skip
    assert ps.lease()["expired"] is True  # type: ignore[index]
    with ps.try_act(ttl=30) as acting:
        assert acting is True
        mine = ps.lease()
        assert mine is not None and mine["holder"] != "other:1:crashed" and mine["expired"] is False
        with ps.try_act() as again:  # not re-entrant
            assert again is False
    assert ps.lease() is None
    with ps.try_act("other-name") as acting:  # leases of other names are independent
        assert acting is True


def test_the_lease_is_released_when_the_block_raises(ps: PromotionStore) -> None:
    with pytest.raises(RuntimeError), ps.try_act() as acting:
        assert acting
        raise RuntimeError("switch failed")
    assert ps.lease() is None
    with ps.try_act() as acting:
        assert acting


def test_a_holder_that_lost_its_lease_writes_nothing(ps: PromotionStore, store: ExperimentStore) -> None:
    policy(ps)
    with ps.try_act(ttl=30) as acting:
        assert acting
        decide(ps, "switch")  # held: written
        with store.engine.begin() as conn:  # stalled past its ttl: another worker took the lease over
            conn.execute(update(promotion_lease).values(holder="other:2:new"))
        with pytest.raises(Conflict, match="lease"):
            decide(ps, "rollback")
    assert [d["action"] for d in ps.decisions()] == ["switch"]
    assert ps.lease()["holder"] == "other:2:new"  # type: ignore[index]  # not released: not ours
    decide(ps, "rollback")  # outside a lease no check applies


def test_bad_lease_arguments_are_invalid(ps: PromotionStore) -> None:
    for kwargs in ({"name": "bad name"}, {"name": ""}, {"ttl": 0}, {"ttl": timedelta(days=2)}, {"ttl": "60"}):
        with pytest.raises(Invalid), ps.try_act(**kwargs):
            pass


def test_the_store_opens_no_connection_until_used() -> None:
    store = ExperimentStore("postgresql+psycopg://postgres@127.0.0.1:1/none", auto_migrate=False)
    PromotionStore(store)
    store.close()


# -- migration 0004 -------------------------------------------------------------------------------


def test_migration_0004_goes_up_and_down(store: ExperimentStore, ps: PromotionStore) -> None:
    store.create_experiment("kept", "n", "d", "v3.0", "v3.1")
    policy(ps)
    decide(ps)
    assert SCHEMA_VERSION == "0008" and PROMOTION_TABLES <= tables(store.engine)
    assert alembic(store.engine, "downgrade", "0003") == "0003"
    assert not PROMOTION_TABLES & tables(store.engine) and "eval_bars" in tables(store.engine)
    assert store.get_experiment("kept")["name"] == "n"  # the other tables are untouched
    assert alembic(store.engine, "upgrade", "head") == "0008"
    assert PROMOTION_TABLES <= tables(store.engine) and ps.policies() == [] and ps.decisions() == []
    policy(ps)
    with ps.try_act() as acting:
        assert acting and decide(ps, "switch")["id"] >= 1
    with store.engine.connect() as conn:
        assert conn.execute(select(promotion_policy.c.challenger)).scalars().all() == ["v3.2"]
