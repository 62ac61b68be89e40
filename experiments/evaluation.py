"""The evaluation log: every logged version's decision on each bar, trusted candles, outcomes, live figures.

Shares the engine of an ExperimentStore (so no connection before first use). Safe with writers in
several processes: rows go in with INSERT ... ON CONFLICT (the first bar row and the first candle
win, a decision's `served` adds up) and bars change state through UPDATEs guarded by their state
(the first resolution wins); keys are written in sorted order so PostgreSQL writers cannot deadlock.

EvaluationStore holds the transactions; the statements live by what they serve: experiments/eval_log.py
(bars and decisions), eval_candles.py (trusted candles), eval_resolution.py (coverage and outcomes),
eval_figures.py (live figures and paired bars), bulk.py (many-row statements of both dialects).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from experiments import eval_candles, eval_figures, eval_log, eval_resolution
from experiments import validation as v
from experiments.db import is_sqlite
from experiments.errors import Invalid
from experiments.eval_resolution import check_resolution
from experiments.purge import delete_in_batches
from experiments.records import BarLog, Candle, CandleSeries, PendingBar, Resolution, as_utc, utcnow
from experiments.schema import NOTE_LEN, eval_bars, market_candles
from experiments.store import ExperimentStore

__all__ = ["EvaluationStore", "check_resolution"]


class EvaluationStore:
    """Evaluation bars, decisions and trusted candles, over an ExperimentStore's engine."""

    def __init__(self, store: ExperimentStore) -> None:
        self._store = store

    def _write(self) -> AbstractContextManager[Connection]:
        """A write transaction, committed on exit (BEGIN IMMEDIATE on SQLite)."""
        return self._store._write()

    def _read(self, snapshot: bool = False) -> AbstractContextManager[Connection]:
        """A read transaction; snapshot=True gives one consistent view on PostgreSQL too."""
        return self._store._read(snapshot)

    @property
    def _sqlite(self) -> bool:
        return is_sqlite(self._store.engine)

    # -- the log -----------------------------------------------------------------------------

    def log(self, rows: Iterable[BarLog]) -> dict[str, int]:
        """Log requests in one transaction: {"bars", "decisions", "rejected"} (distinct keys written).

        The first row of a bar wins; a decision is inserted once and later rows add their `served`.
        Decisions about a bar that is no longer pending are not logged. An invalid row is rejected
        (counted and logged) so it cannot fail the rest of its batch.
        """
        bars, decisions, rejected = eval_log.merge(rows)
        if not bars:
            return {"bars": 0, "decisions": 0, "rejected": rejected}
        with self._write() as conn:
            written = eval_log.write(conn, bars, decisions, self._sqlite)
        return {"bars": len(bars), "decisions": written, "rejected": rejected}

    def logged(self, pair: str, timeframe: str, times: Sequence[datetime]) -> set[datetime]:
        """Which of these bar times of a pair and timeframe are in the log already."""
        pair, timeframe = v.check_pair(pair), v.check_timeframe(timeframe)
        keys = [(pair, timeframe, as_utc(t)) for t in times]
        if not keys:
            return set()
        with self._read() as conn:
            return {k[2] for k in eval_log.bar_ids(conn, keys, self._sqlite)}

    # -- candles -----------------------------------------------------------------------------

    def add_candles(
        self, pair: str, timeframe: str, candles: Sequence[Candle], source: str, tolerance: float = 1e-6
    ) -> dict[str, Any]:
        """Store trusted candles, the first stored wins: {"inserted", "duplicates", "conflicts", "conflict_times",
        "inserted_times"}.

        A candle differing from the stored one by more than `tolerance` (relative, per price) is a
        conflict. Mostly duplicates is the common case, so stored candles are read first and only
        new ones are written (one write transaction, none when nothing is new).
        """
        key, source = (v.check_pair(pair), v.check_timeframe(timeframe)), v.check_source(source)
        if not (isinstance(tolerance, int | float) and 0 <= tolerance < 1):
            raise Invalid("tolerance must be a number in [0, 1)")
        incoming, counts = eval_candles.dedupe([eval_candles.check_candle(c) for c in candles], tolerance)
        if not incoming:
            return counts
        with self._read() as conn:
            stored = eval_candles.stored(conn, *key, list(incoming))
        new = eval_candles.compare(incoming, stored, tolerance, counts)
        if new:
            with self._write() as conn:
                eval_candles.insert(conn, key, new, source, tolerance, counts, self._sqlite)
        return counts

    def candles_for(self, pair: str, timeframe: str, first: datetime, last: datetime, before: int) -> CandleSeries:
        """Stored candles from the `before`-th at or before `first` through `last`, oldest first."""
        pair, timeframe = v.check_pair(pair), v.check_timeframe(timeframe)
        with self._read() as conn:
            return eval_candles.between(conn, pair, timeframe, as_utc(first), as_utc(last), before)

    # -- resolution --------------------------------------------------------------------------

    def resolvable(self, step: timedelta, horizon: int, limit: int = 1000, before: int = 0) -> list[PendingBar]:
        """Up to `limit` covered pending bars, oldest first per pair and timeframe, with their candles.

        Each comes with its decisions, the first `horizon` stored candles after bar_time (`after`)
        and up to `before` stored candles at and before bar_time (`before`, oldest first). `step`
        is the timeframe's bar length: it bounds the time span each candle query reads.
        """
        if horizon < 1 or limit < 1 or before < 0 or step <= timedelta(0):
            raise Invalid("resolvable needs horizon >= 1, limit >= 1, before >= 0 and a positive step")
        with self._read(snapshot=True) as conn:
            return eval_resolution.pending(conn, step, horizon, limit, before)

    def write_results(self, results: Iterable[Resolution], facts: dict[int, tuple[float, float]] | None = None) -> int:
        """Record outcomes and mark their bars resolved (one transaction); returns bars newly resolved.

        facts: {bar_id: (entry, atr)} from trusted candles, stored with the bar in place of what was logged.
        Idempotent: a bar no longer pending is left as it is (the first resolution wins).
        """
        by_bar, trusted = eval_resolution.checked(results, facts)
        if not by_bar:
            return 0
        with self._write() as conn:
            return eval_resolution.resolve(conn, by_bar, trusted, self._sqlite)

    def void(self, bars: Sequence[tuple[int, str]]) -> int:
        """Set aside pending bars that cannot be resolved, each with why (state expired, `note` set)."""
        rows = [{"bid": int(i), "why": str(why)[:NOTE_LEN] or "void"} for i, why in sorted(bars)]
        if not rows:
            return 0
        b = eval_bars.c
        stmt = (
            update(eval_bars)
            .where(b.id == bindparam("bid"), b.state == "pending")
            .values(state="expired", note=bindparam("why"), resolved_at=utcnow())
        )
        with self._write() as conn:
            return int(conn.execute(stmt, rows).rowcount or 0)

    def expire(self, older_than: datetime) -> int:
        """Pending bars created before `older_than` become expired; returns how many."""
        b = eval_bars.c
        stmt = update(eval_bars).where(b.state == "pending", b.created_at < as_utc(older_than)).values(state="expired")
        with self._write() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    # -- figures -----------------------------------------------------------------------------

    def live(
        self, version: str, pair: str | None = None, timeframe: str | None = None, since: datetime | None = None
    ) -> dict[str, Any]:
        """One version's live figures over bars (bar_time >= since), from one aggregate query.

        Signals are resolved long/short decisions with a result; Stage 1 counts take signal != hold
        as the positive prediction against label_held (decisions without a label are left out).
        """
        with self._read() as conn:
            row = conn.execute(eval_figures.live_query(version, pair, timeframe, since)).one()
        return eval_figures.live_dict(row._mapping)

    def pending_backlog(self) -> tuple[int, datetime | None]:
        """(pending bars, oldest pending created_at) for the backlog gauges."""
        stmt = select(func.count(), func.min(eval_bars.c.created_at)).where(eval_bars.c.state == "pending")
        with self._read() as conn:
            count, oldest = conn.execute(stmt).one()
        return int(count), (as_utc(oldest) if oldest is not None else None)

    def paired(
        self,
        a: str,
        b: str,
        pair: str | None = None,
        timeframe: str | None = None,
        since: datetime | None = None,
        limit: int = 100_000,
        logged_since: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Resolved bars on which both versions decided, in bar_time order (the newest `limit`).

        since: bars at or after this bar time; logged_since: bars first logged at or after this time.
        """
        stmt = eval_figures.paired_query(a, b, (pair, timeframe, since), limit, logged_since)
        with self._read() as conn:
            rows = conn.execute(stmt).all()[::-1]
        return [eval_figures.paired_dict(r._mapping) for r in rows]

    # -- retention ---------------------------------------------------------------------------

    def purge(self, older_than: timedelta) -> dict[str, int]:
        """Delete bars created (with their decisions) and candles received before now - older_than."""
        cutoff = utcnow() - older_than
        bars = delete_in_batches(self._write, eval_bars, eval_bars.c.created_at < cutoff)
        candles = delete_in_batches(self._write, market_candles, market_candles.c.received_at < cutoff)
        return {"bars": bars, "candles": candles}
