"""The evaluation log (issue 12) on SQLite and PostgreSQL: bars, decisions, trusted candles and resolution."""

from __future__ import annotations

import multiprocessing as mp
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from experiments import (
    BarLog,
    Candle,
    Decision,
    EvaluationStore,
    ExperimentStore,
    Invalid,
    Resolution,
)
from experiments.records import as_utc, utcnow
from experiments.schema import eval_bars, market_candles
from tests.unit.evaluation_rows import T0, H, bar, candle, dec, decisions_of

pytest_plugins = ["tests.conftest_pg"]


@pytest.fixture
def ev(store: ExperimentStore) -> EvaluationStore:
    return EvaluationStore(store)


# -- log ------------------------------------------------------------------------------------------


def test_log_inserts_each_decision_once_and_adds_served(ev: EvaluationStore, store: ExperimentStore) -> None:
    first = [bar(0, dec("v3.1", served=1), dec("v3.0", "hold", 0.2)), bar(0, dec("v3.1", served=1))]
    assert ev.log(first) == {"bars": 1, "decisions": 2, "rejected": 0}
    later = bar(0, dec("v3.1", "short", 0.9, served=1), dec("v3.0", "long", 0.8), entry=1.3)
    ev.log([later, bar(1, dec("v3.0", served=1))])
    rows = decisions_of(store)
    assert set(rows) == {(T0, "v3.1"), (T0, "v3.0"), (T0 + H, "v3.0")}
    assert rows[(T0, "v3.1")].served == 3 and rows[(T0, "v3.0")].served == 0
    assert rows[(T0, "v3.1")].signal == "long" and rows[(T0, "v3.1")].p_reversal == 0.7  # first decision stays
    assert rows[(T0, "v3.1")].entry == 1.1 and rows[(T0, "v3.1")].state == "pending"  # first bar row wins
    assert rows[(T0 + H, "v3.0")].served == 1


def test_log_keeps_floats_exactly_and_times_as_utc(ev: EvaluationStore, store: ExperimentStore) -> None:
    rng = random.Random(3)
    values = [(rng.uniform(0.5, 200.0), rng.uniform(1e-6, 1.0), rng.random()) for _ in range(50)]
    ev.log([BarLog("USDJPY", "1h", T0 + i * H, e, a, 0.01, (Decision("v", "long", p, p / 2, 1),))
            for i, (e, a, p) in enumerate(values)])  # fmt: skip
    rows = decisions_of(store)
    for i, (e, a, p) in enumerate(values):
        row = rows[(T0 + i * H, "v")]
        assert (row.entry, row.atr, row.p_reversal, row.p_long) == (e, a, p, p / 2)
    plus_two = timezone(timedelta(hours=2))
    ev.log([BarLog("USDJPY", "1h", (T0 + 2 * H).astimezone(plus_two), 9.0, 1.0, 0.01, (dec("v", served=1),))])
    assert decisions_of(store)[(T0 + 2 * H, "v")].served == 2  # the same bar, written in another zone


def test_invalid_rows_are_rejected_without_failing_the_batch(ev: EvaluationStore, store: ExperimentStore) -> None:
    bad = [
        BarLog("EURUSD", "1h", T0, float("nan"), 0.001, 0.0001, (dec(),)),
        BarLog("EURUSD", "1h", T0, 1.1, 0.0, 0.0001, (dec(),)),
        BarLog("EUR USD", "1h", T0, 1.1, 0.001, 0.0001, (dec(),)),
        BarLog("EURUSD", "1h", "2024-01-01", 1.1, 0.001, 0.0001, (dec(),)),  # type: ignore[arg-type]
        bar(0, Decision("v3.1", "buy", 0.5)),
        bar(0, Decision("v3.1", "long", 1.5)),
        bar(0, Decision("v3.1", "long", 0.5, served=-1)),
        bar(0, Decision("", "long", 0.5)),
    ]
    assert ev.log([*bad, bar(5, dec())]) == {"bars": 1, "decisions": 1, "rejected": len(bad)}
    assert set(decisions_of(store)) == {(T0 + 5 * H, "v3.1")}
    assert ev.log([]) == {"bars": 0, "decisions": 0, "rejected": 0}


def test_decisions_about_a_closed_bar_are_not_logged(ev: EvaluationStore, store: ExperimentStore) -> None:
    ev.log([bar(0, dec("a")), bar(1, dec("a"))])
    ids = _ids(store)
    ev.write_results([Resolution(ids[T0], "a", "hit", 10.0, True)])
    ev.log([bar(0, dec("b", served=1)), bar(1, dec("b", served=1))])
    assert set(decisions_of(store)) == {(T0, "a"), (T0 + H, "a"), (T0 + H, "b")}


def _log_worker(url: str, rounds: int) -> int:
    """A separate process (as a BentoML worker): logs the same bars `rounds` times."""
    store = ExperimentStore(url)
    try:
        ev = EvaluationStore(store)
        for _ in range(rounds):
            ev.log([bar(i, dec("served", served=1), dec("shadow", "hold", 0.1)) for i in range(40)])
        return rounds
    finally:
        store.close()


def test_processes_logging_the_same_bars_add_up(store: ExperimentStore) -> None:
    store.ensure_schema()  # one migration before the race (the service runs it before workers start)
    with mp.get_context("spawn").Pool(3) as pool:
        assert sum(pool.starmap(_log_worker, [(store.url, 15)] * 3)) == 45
    rows = decisions_of(store)
    assert len(rows) == 80
    assert all(r.served == 45 for (_, v), r in rows.items() if v == "served")
    assert all(r.served == 0 for (_, v), r in rows.items() if v == "shadow")


def test_threads_with_their_own_engines_logging_the_same_bars_add_up(
    make_store: Callable[[], ExperimentStore],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    stores = [make_store() for _ in range(4)]
    stores[0].ensure_schema()
    rows = [bar(i, dec("served", served=1)) for i in range(60)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: [EvaluationStore(s).log(reversed(rows) if k % 2 else rows) for k in range(10)],
                      stores))  # fmt: skip
    assert [r.served for r in decisions_of(stores[0]).values()] == [40] * 60


# -- candles ---------------------------------------------------------------------------------------


def test_candles_first_wins_and_conflicts_are_counted(ev: EvaluationStore, store: ExperimentStore) -> None:
    day = [candle(T0 + i * H, 1.1 + i * 1e-4) for i in range(10)]
    assert ev.add_candles("EURUSD", "1h", day, "candles_route") == {
        "inserted": 10, "duplicates": 0, "conflicts": 0, "conflict_times": [], "inserted_times": [c.ts for c in day]
    }  # fmt: skip
    nudged = candle(day[3].ts, day[3].close * (1 + 1e-7))  # within the tolerance
    moved = candle(day[4].ts, day[4].close + 0.01)  # beyond it
    got = ev.add_candles("EURUSD", "1h", [*day[:3], nudged, moved, candle(T0 + 10 * H)], "predict")
    assert got == {"inserted": 1, "duplicates": 4, "conflicts": 1, "conflict_times": [day[4].ts],
                   "inserted_times": [T0 + 10 * H]}  # fmt: skip
    repeated = ev.add_candles("EURUSD", "1h", [candle(T0 + 11 * H), candle(T0 + 11 * H, 1.2)], "predict")
    assert (repeated["inserted"], repeated["conflicts"]) == (1, 1)  # within one call the first wins too
    with store.engine.connect() as conn:
        stored = {as_utc(r.ts): r for r in conn.execute(select(market_candles))}
    assert stored[day[4].ts].close == day[4].close and stored[day[4].ts].source == "candles_route"
    assert stored[T0 + 10 * H].source == "predict" and stored[T0 + 11 * H].close == 1.1
    assert ev.add_candles("GBPUSD", "1h", day, "predict")["inserted"] == 10  # another pair
    assert ev.add_candles("EURUSD", "1h", [], "predict")["inserted"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        Candle(T0, 1.1, 1.0, 1.05, 1.1),  # high below low
        Candle(T0, 1.2, 1.1, 1.0, 1.05),  # open above high
        Candle(T0, 1.0, 1.1, 0.0, 1.0),  # low not positive
        Candle(T0, float("inf"), 1.1, 1.0, 1.05),
    ],
)
def test_inconsistent_candles_are_refused(ev: EvaluationStore, bad: Candle) -> None:
    with pytest.raises(Invalid, match="candle"):
        ev.add_candles("EURUSD", "1h", [candle(T0 - H), bad], "predict")


def test_bad_candle_arguments_are_refused(ev: EvaluationStore) -> None:
    with pytest.raises(Invalid, match="source"):
        ev.add_candles("EURUSD", "1h", [candle(T0)], "bad source")
    with pytest.raises(Invalid, match="timeframe"):
        ev.add_candles("EURUSD", "1 hour", [candle(T0)], "predict")


# -- resolution ------------------------------------------------------------------------------------


def _market_hours(n: int) -> list[datetime]:
    """n hourly timestamps from T0 that skip weekends (Friday 22:00 to Sunday 22:00 UTC)."""
    out, t = [], T0
    while len(out) < n:
        closed = (t.weekday() == 4 and t.hour >= 22) or t.weekday() == 5 or (t.weekday() == 6 and t.hour < 22)
        if not closed:
            out.append(t)
        t += H
    return out


@pytest.mark.parametrize("step", [H, timedelta(seconds=1)])  # 1 s: many candle queries (SPAN_BARS)
def test_resolvable_returns_exactly_the_covered_bars(
    ev: EvaluationStore, store: ExperimentStore, step: timedelta
) -> None:
    rng = random.Random(7)
    times = _market_hours(200)
    stored = sorted(rng.sample(times[:180], 150))  # holes, a weekend and no candles at the end
    ev.add_candles("EURUSD", "1h", [candle(t, 1.1 + i * 1e-4) for i, t in enumerate(stored)], "predict")
    ev.add_candles("GBPUSD", "1h", [candle(t) for t in times], "predict")  # another pair: no influence
    bar_times = sorted(rng.sample(times, 60))
    ev.log([BarLog("EURUSD", "1h", t, 1.1, 0.001, 0.0001, (dec("b"), dec("a", served=1))) for t in bar_times])
    horizon, before = 12, 5
    got = ev.resolvable(step, horizon, limit=1000, before=before)
    want = [t for t in bar_times if sum(s > t for s in stored) >= horizon]
    assert [b.bar_time for b in got] == want and len(want) > 10
    for b in got:
        after = [s for s in stored if s > b.bar_time][:horizon]
        earlier = [s for s in stored if s <= b.bar_time][-before:]
        assert list(b.after.ts) == after and list(b.before.ts) == earlier
        assert list(b.after.close) == [1.1 + stored.index(s) * 1e-4 for s in after]
        assert list(b.after.high) == [c + 0.001 for c in b.after.close]
        assert [d.version for d in b.decisions] == ["a", "b"] and b.decisions[0].served == 1
        assert (b.pair, b.timeframe, b.entry, b.atr, b.pip) == ("EURUSD", "1h", 1.1, 0.001, 0.0001)
    assert [b.bar_time for b in ev.resolvable(step, horizon, limit=7)] == want[:7]


def test_resolvable_batches_pairs_and_timeframes(ev: EvaluationStore) -> None:
    times = _market_hours(30)
    for pair, tf in (("EURUSD", "1h"), ("EURUSD", "4h"), ("USDJPY", "1h")):
        ev.log([BarLog(pair, tf, t, 1.1, 0.001, 0.0001, (dec(),)) for t in times[:10]])
    ev.add_candles("EURUSD", "1h", [candle(t) for t in times], "predict")
    ev.add_candles("USDJPY", "1h", [candle(t) for t in times[:15]], "predict")  # covers bars 0-2 only
    got = [(b.pair, b.timeframe, b.bar_time) for b in ev.resolvable(H, 12, limit=100)]
    assert got == [("EURUSD", "1h", t) for t in times[:10]] + [("USDJPY", "1h", t) for t in times[:3]]
    assert len(ev.resolvable(H, 12, limit=12)) == 12
    with pytest.raises(Invalid):
        ev.resolvable(H, 0)


def _ids(store: ExperimentStore) -> dict[datetime, int]:
    with store.engine.connect() as conn:
        return {as_utc(t): i for i, t in conn.execute(select(eval_bars.c.id, eval_bars.c.bar_time))}


def test_write_results_resolves_once(ev: EvaluationStore, store: ExperimentStore) -> None:
    ev.log([bar(i, dec("a"), dec("b", "hold", 0.1)) for i in range(3)])
    ids = _ids(store)
    first = [Resolution(ids[T0], "a", "hit", 21.5, True), Resolution(ids[T0], "b", None, None, False)]
    assert ev.write_results(first) == 1
    again = [Resolution(ids[T0], "a", "stop", -10.0, False), Resolution(ids[T0 + H], "a", "timeout", 1.5, None)]
    assert ev.write_results(again) == 1  # bar 0 keeps its first outcome, bar 1 is resolved now
    rows = decisions_of(store)
    assert (rows[(T0, "a")].result, rows[(T0, "a")].pips, rows[(T0, "a")].label_held) == ("hit", 21.5, True)
    assert (rows[(T0, "b")].result, rows[(T0, "b")].label_held) == (None, False)
    assert rows[(T0, "a")].state == "resolved" and rows[(T0, "a")].resolved_at is not None
    assert (rows[(T0 + H, "a")].result, rows[(T0 + H, "a")].label_held) == ("timeout", None)
    assert ev.write_results([]) == 0
    with pytest.raises(Invalid, match="result"):
        ev.write_results([Resolution(ids[T0 + 2 * H], "a", "win", 1.0, True)])
    with pytest.raises(Invalid, match="pips"):
        ev.write_results([Resolution(ids[T0 + 2 * H], "a", "hit", float("nan"), True)])
    assert ev.pending_backlog()[0] == 1  # the refused outcomes left bar 2 pending


def test_resolution_stores_the_trusted_entry_and_atr_and_void_bars_say_why(
    ev: EvaluationStore, store: ExperimentStore
) -> None:
    ev.log([bar(i, dec("a"), entry=5.0) for i in range(3)])  # what a request said: entry 5.0
    ids = _ids(store)
    done = ev.write_results([Resolution(ids[T0], "a", "hit", 21.5, True)], {ids[T0]: (1.0528, 0.0009)})
    assert done == 1
    assert ev.void([(ids[T0 + H], "no trusted candle of the bar itself was stored"), (ids[T0], "late")]) == 1
    with pytest.raises(Invalid, match="atr"):
        ev.write_results([Resolution(ids[T0 + 2 * H], "a", "hit", 1.0, True)], {ids[T0 + 2 * H]: (1.05, 1e-320)})
    with store.engine.connect() as conn:
        rows = {as_utc(r.bar_time): r for r in conn.execute(select(eval_bars))}
    assert (rows[T0].entry, rows[T0].atr, rows[T0].state, rows[T0].note) == (1.0528, 0.0009, "resolved", None)
    assert (rows[T0 + H].state, rows[T0 + H].note) == ("expired", "no trusted candle of the bar itself was stored")
    assert rows[T0 + 2 * H].state == "pending" and rows[T0 + 2 * H].entry == 5.0
    assert ev.live("a")["void"] == 1 and ev.live("a")["expired"] == 1


def test_candles_for_and_logged_read_the_trusted_history(ev: EvaluationStore) -> None:
    ev.add_candles("EURUSD", "1h", [candle(T0 + i * H, 1.1 + i * 1e-4) for i in range(100)], "candles_route")
    got = ev.candles_for("EURUSD", "1h", T0 + 70 * H, T0 + 80 * H, 64)
    assert got.ts == tuple(T0 + i * H for i in range(7, 81)) and got.close[-1] == pytest.approx(1.108)
    assert ev.candles_for("EURUSD", "1h", T0 + 3 * H, T0 + 3 * H, 64).ts == tuple(T0 + i * H for i in range(4))
    assert ev.candles_for("GBPUSD", "1h", T0, T0 + 5 * H, 64).ts == ()
    ev.log([bar(5, dec()), bar(9, dec())])
    assert ev.logged("EURUSD", "1h", [T0 + i * H for i in range(12)]) == {T0 + 5 * H, T0 + 9 * H}
    assert ev.logged("EURUSD", "4h", [T0 + 5 * H]) == set() and ev.logged("EURUSD", "1h", []) == set()


def test_expire_and_the_pending_backlog(ev: EvaluationStore, store: ExperimentStore) -> None:
    assert ev.pending_backlog() == (0, None)
    ev.log([bar(i, dec()) for i in range(4)])
    old = utcnow() - timedelta(days=3)
    with store.engine.begin() as conn:
        conn.execute(update(eval_bars).where(eval_bars.c.bar_time < T0 + 2 * H).values(created_at=old))
    count, oldest = ev.pending_backlog()
    assert count == 4 and oldest is not None and abs(oldest - old) < timedelta(seconds=1)
    ids = _ids(store)
    ev.write_results([Resolution(ids[T0], "v3.1", "hit", 5.0, True)])
    assert ev.expire(utcnow() - timedelta(days=1)) == 1  # bar 1; bar 0 is resolved, bars 2-3 are young
    assert ev.expire(utcnow() - timedelta(days=1)) == 0
    assert ev.write_results([Resolution(ids[T0 + H], "v3.1", "hit", 5.0, True)]) == 0  # expired stays
    states = {t: r.state for (t, _), r in decisions_of(store).items()}
    assert states == {T0: "resolved", T0 + H: "expired", T0 + 2 * H: "pending", T0 + 3 * H: "pending"}
    assert ev.pending_backlog()[0] == 2
