"""The evaluation log (issue 12) on SQLite and PostgreSQL: live figures and paired series."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, update

from experiments import BarLog, Decision, EvaluationStore, ExperimentStore, Resolution
from experiments.records import as_utc
from experiments.schema import eval_bars
from tests.unit.evaluation_rows import T0, H

pytest_plugins = ["tests.conftest_pg"]


@pytest.fixture
def ev(store: ExperimentStore) -> EvaluationStore:
    return EvaluationStore(store)


# -- live figures and paired series ----------------------------------------------------------------


def _random_history(ev: EvaluationStore, store: ExperimentStore, seed: int) -> list[dict[str, Any]]:
    """Log, resolve and expire random bars of versions a and b; returns what was stored, per decision."""
    rng = random.Random(seed)
    rows, truth = [], []
    for i in range(240):
        pair, tf = rng.choice(["EURUSD", "USDJPY"]), rng.choice(["1h", "4h"])
        decisions = [Decision(v, rng.choice(["long", "short", "hold"]), rng.random(), None, rng.randint(0, 2))
                     for v in ("a", "b") if v == "a" or rng.random() < 0.7]  # fmt: skip
        rows.append(BarLog(pair, tf, T0 + i * H, 1.1, 0.001, 0.0001, tuple(decisions)))
    ev.log(rows)
    with store.engine.connect() as conn:
        ids = {(r.pair, r.timeframe, as_utc(r.bar_time)): r.id for r in conn.execute(select(eval_bars))}
    results, expired = [], []
    for row in rows:
        bar_id, fate = ids[(row.pair, row.timeframe, row.bar_time)], rng.random()
        for d in row.decisions:
            traded = d.signal != "hold"
            result = rng.choice(["hit", "stop", "timeout"]) if traded else None
            pips = round(rng.gauss(2, 15), 3) if traded else None
            held = rng.choice([True, False, None])
            state = "resolved" if fate < 0.7 else "expired" if fate < 0.85 else "pending"
            if state == "resolved":
                results.append(Resolution(bar_id, d.version, result, pips, held))
            truth.append({"version": d.version, "pair": row.pair, "timeframe": row.timeframe,
                          "bar_time": row.bar_time, "state": state, "signal": d.signal, "p": d.p_reversal,
                          "result": result, "pips": pips, "held": held, "bar_id": bar_id})  # fmt: skip
        if 0.7 <= fate < 0.85:
            expired.append(bar_id)
    ev.write_results(results)
    with store.engine.begin() as conn:
        conn.execute(update(eval_bars).where(eval_bars.c.id.in_(expired)).values(created_at=T0))
    ev.expire(T0 + H)
    return truth


def _expected_live(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The live block computed in Python, as a reference for the SQL aggregates."""
    done = [r for r in rows if r["state"] == "resolved"]
    signals = [r for r in done if r["signal"] != "hold"]
    labelled = [r for r in done if r["held"] is not None]
    tp = sum(r["signal"] != "hold" and r["held"] for r in labelled)
    fp = sum(r["signal"] != "hold" and not r["held"] for r in labelled)
    fn = sum(r["signal"] == "hold" and r["held"] for r in labelled)
    sse = sum((r["p"] - float(r["held"])) ** 2 for r in labelled)
    hits = sum(r["result"] == "hit" for r in signals)
    total = sum(r["pips"] for r in signals)
    return {
        "resolved": len(done), "pending": sum(r["state"] == "pending" for r in rows),
        "expired": sum(r["state"] == "expired" for r in rows), "void": 0, "signals": len(signals), "hits": hits,
        "labelled": len(labelled), "tp": tp, "fp": fp, "fn": fn, "total_pips": total, "squared_error": sse,
        "hit_rate": hits / len(signals) if signals else None,
        "mean_pips": total / len(signals) if signals else None,
        "brier": sse / len(labelled) if labelled else None,
        "stage1_precision": tp / (tp + fp) if tp + fp else None,
        "stage1_recall": tp / (tp + fn) if tp + fn else None,
    }  # fmt: skip


def test_live_aggregates_equal_a_python_computation(ev: EvaluationStore, store: ExperimentStore) -> None:
    truth = _random_history(ev, store, seed=11)
    since = T0 + 100 * H
    cases: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
        ({}, lambda r: True),
        ({"pair": "USDJPY"}, lambda r: r["pair"] == "USDJPY"),
        ({"timeframe": "4h", "since": since}, lambda r: r["timeframe"] == "4h" and r["bar_time"] >= since),
    ]
    for version in ("a", "b"):
        for filters, keep in cases:
            want = _expected_live([r for r in truth if r["version"] == version and keep(r)])
            got = ev.live(version, **filters)
            assert set(got) == set(want)
            for key, value in want.items():
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), (version, filters, key)
    assert ev.live("a")["signals"] > 20 and ev.live("a")["expired"] > 0 and ev.live("a")["pending"] > 0
    assert ev.live("nobody") == _expected_live([])


def test_paired_lists_bars_both_versions_decided_in_bar_order(ev: EvaluationStore, store: ExperimentStore) -> None:
    truth = _random_history(ev, store, seed=5)
    by_bar: dict[int, dict[str, dict[str, Any]]] = {}
    for r in truth:
        if r["state"] == "resolved":
            by_bar.setdefault(r["bar_id"], {})[r["version"]] = r
    both = sorted((v for v in by_bar.values() if len(v) == 2), key=lambda v: v["a"]["bar_time"])
    got = ev.paired("a", "b")
    assert [p["bar_id"] for p in got] == [v["a"]["bar_id"] for v in both] and len(got) > 50
    for p, v in zip(got, both, strict=True):
        assert p["bar_time"] == v["a"]["bar_time"] and (p["atr"], p["pip"]) == (0.001, 0.0001)
        for side in ("a", "b"):
            want = v[side]
            assert p[side] == {"signal": want["signal"], "result": want["result"], "pips": want["pips"],
                               "p_reversal": want["p"], "label_held": want["held"]}  # fmt: skip
    assert ev.paired("a", "b", limit=5) == got[-5:]  # the newest bars: old ones cannot crowd them out
    since = T0 + 120 * H
    assert ev.paired("a", "b", pair="EURUSD", since=since) == [
        p for p in got if p["pair"] == "EURUSD" and p["bar_time"] >= since
    ]
    assert [p["bar_id"] for p in ev.paired("b", "a")] == [p["bar_id"] for p in got]
