"""The outcome loop: log what every version said about each bar, store trusted candles, resolve outcomes.

Only trusted sources write here (README "Outcomes", docs/deployment.md "The outcome loop"): a predict
with the outcome or admin token logs its bar, and every bar closed by trusted candles
(POST /reversal/candles) is scored by every loaded version (aifx/serving/trusted_bars.py). Entry and
ATR14 of a bar are taken from the trusted candles when it resolves, never from a request.

Rows go through a bounded write-behind queue (experiments.writebehind): a prediction never waits
for the database, a full queue or a failing database drops rows (counted), and shutdown flushes
what is queued. Each worker resolves covered bars every AIFX_RESOLVE_EVERY_SECONDS; the database
keeps the first resolution of a bar, so workers racing on one bar agree.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from aifx import instruments, metrics, outcomes, trade
from aifx import signal as sig
from aifx.candles import Candles
from aifx.serving.context import get_logger
from aifx.serving.log_rows import (
    Bar,
    CandleRows,
    bar_at,
    bar_log,
    bars_at,
    candle_groups,
    count_conflicts,
    live_block,
    pair_filter,
    queued_bytes,
    to_records,
)
from aifx.serving.resolver import resolve_pending
from aifx.settings import Settings
from experiments import records
from experiments.errors import Invalid
from experiments.evaluation import EvaluationStore
from experiments.spool import Spool
from experiments.writebehind import WriteBehind

logger = get_logger("bentoml.aifx.outcomes")
SCORED_BARS = 50_000  # bars this worker remembers having scored (LRU)
LIVE_TTL_S = 1.5  # the `live` figures of /reversal/models are read at most this often per filter and worker


class OutcomeLog:
    """The entry worker's side of the outcome loop."""

    def __init__(
        self,
        settings: Settings,
        store: EvaluationStore,
        label_params: Callable[[], Mapping[str, Any]],
        spool: Spool | None = None,
    ):
        self.settings = settings
        self.store = store
        self.rule = trade.TradeRule(cost_pips=settings.trade_cost_pips)
        self.label_params = label_params
        self.spool = spool
        self.writer: WriteBehind[records.BarLog | CandleRows] = WriteBehind(
            self._write, capacity=settings.evaluation_queue_rows, on_drop=metrics.count_evaluation_drop,
            name="evaluation-log", max_bytes=settings.evaluation_queue_bytes, size_of=queued_bytes,
            idle=self._replay if spool is not None else None,
        )  # fmt: skip
        self._scored: OrderedDict[tuple[str, str, datetime], frozenset[str]] = OrderedDict()
        # Each background job rests on its own after failures; reads never trip either.
        self.backoff = Backoff()  # the write-behind
        self.resolve_backoff = Backoff()
        self._live: dict[tuple[Any, ...], tuple[float, dict[str, dict[str, Any]]]] = {}
        self._kick = asyncio.Event()

    def bar(self, pair: str, timeframe: str, candles: Candles, now: datetime | None = None) -> Bar | None:
        """The request's bar with its entry, ATR14 and pip (None when it has no trade levels); `problem` says why
        a bar with levels may still not be logged (off the grid, future, too old)."""
        return bar_at(pair, timeframe, candles, self.settings.pip_sizes, self.expiry, now or datetime.now(UTC))

    def bars(self, asked: Sequence[tuple[str, str, Candles]], now: datetime | None = None) -> list[Bar | None]:
        """bar() of many requests' (pair, timeframe, candles) in one pass (log_rows.bars_at)."""
        return bars_at(asked, self.settings.pip_sizes, self.expiry, now or datetime.now(UTC))

    @property
    def expiry(self) -> timedelta:
        return timedelta(hours=self.settings.outcome_expiry_hours)

    def shadow_versions(self, bar: Bar, served: str, loaded: Sequence[str]) -> list[str]:
        """Versions to score beside the served one on this bar: each version once per bar and worker."""
        wanted = [v for v in loaded if v != served]
        if self.settings.shadow_versions is not None:
            wanted = [v for v in wanted if v in self.settings.shadow_versions]
        done = self._scored.get(bar.key, frozenset())
        todo = [v for v in wanted if v not in done]
        self._scored[bar.key] = done | {served, *todo}
        self._scored.move_to_end(bar.key)
        while len(self._scored) > SCORED_BARS:
            self._scored.popitem(last=False)
        return todo

    def log(self, bar: Bar, decisions: Sequence[tuple[str, sig.Decision, int]]) -> None:
        """Queue the decisions a trusted source made on a bar: (version, decision, served 1 or shadow 0)."""
        if bar.problem is not None:
            metrics.count_evaluation_drop("bar")
            return
        self.writer.put(bar_log(bar, decisions))

    def trade(self, bar: Bar | None, signal: str) -> dict[str, Any] | None:
        """The `trade` block of a long or short answer (None for a hold or an unscorable bar)."""
        levels = outcomes.trade_levels(signal, bar.facts, self.rule) if bar is not None else None
        return levels.to_dict() if levels is not None else None

    def trust(self, bar: Bar, candles: Candles, source: str) -> None:
        """Queue the candles of a trusted request (outcome or admin token) about a bar that may be logged."""
        if bar.problem is None:
            self.writer.put(CandleRows(bar.pair, bar.timeframe, to_records(candles), source))

    # -- candles route -----------------------------------------------------------------------------

    async def add_candles(self, pair: str, timeframe: str, candles: Candles) -> dict[str, Any]:
        """Store candles posted to /reversal/candles now (the answer reports what was new) and resolve.

        pair and timeframe are canonical (the route checked them against the instrument table).
        """
        rows, tolerance = to_records(candles), self.settings.candle_tolerance
        counts = await asyncio.to_thread(self.store.add_candles, pair, timeframe, rows, "candles_route", tolerance)
        count_conflicts(pair, timeframe, counts)
        self._kick.set()
        return counts

    async def history(
        self, pair: str, timeframe: str, first: datetime, last: datetime, before: int
    ) -> records.CandleSeries:
        """Trusted candles from the `before`-th at or before `first` through `last` (oldest first)."""
        return await asyncio.to_thread(self.store.candles_for, pair, timeframe, first, last, before)

    async def logged(self, pair: str, timeframe: str, times: Sequence[datetime]) -> set[datetime]:
        """Which of these bars are in the log already."""
        return await asyncio.to_thread(self.store.logged, pair, timeframe, times)

    async def log_now(self, rows: Sequence[records.BarLog]) -> int:
        """Write bars scored from trusted candles before the route answers (nothing acknowledged is lost)."""
        if not rows:
            return 0
        done = await asyncio.to_thread(self.store.log, rows)
        metrics.EVAL_LOGGED.inc(done["bars"])
        return int(done["bars"])

    async def live(
        self, versions: Sequence[str], pair: str | None, timeframe: str | None, since: datetime | None
    ) -> dict[str, dict[str, Any]]:
        """Each version's live block (README "Outcomes") in one worker thread, cached for LIVE_TTL_S.

        A read never rests the background jobs: a failure here is this request's 503 alone.
        """
        pair = pair_filter(pair)
        timeframe = (instruments.canonical_timeframe(timeframe) or timeframe.strip()) if timeframe else None
        filters = {"pair": pair, "timeframe": timeframe, "since": since.isoformat() if since else None}
        key = (tuple(versions), pair, timeframe, since)
        hit = self._live.get(key)
        if hit is not None and time.monotonic() - hit[0] < LIVE_TTL_S:
            return hit[1]

        def read() -> dict[str, dict[str, Any]]:
            return {v: live_block(self.store.live(v, pair, timeframe, since), filters) for v in versions}

        out = await asyncio.to_thread(read)
        if len(self._live) > 256:  # filters are client-chosen: keep the cache bounded
            self._live.clear()
        self._live[key] = (time.monotonic(), out)
        return out

    def publish_live(self, versions: Sequence[str], labels: metrics.MetricLabels) -> None:
        """Refresh the live gauges of every version (the resolver's worker)."""
        for version in versions:
            metrics.set_live(labels, version, self.store.live(version))

    # -- background ------------------------------------------------------------------------------

    def _write(self, rows: list[records.BarLog | CandleRows]) -> None:
        """The write-behind batch: candles first (so a bar and its covering candles resolve together), then bars.

        After a failure the database is left alone for a growing pause: retrying four times a second would
        keep request threads waiting behind our attempts. Meanwhile rows go to the spool (written, oldest
        first, once the database answers); only beyond its bound are they dropped and counted.
        """
        try:
            with self.backoff:
                if self.spool is not None and self.spool.pending()[0]:
                    self.spool.replay(self._write_rows)  # older rows first
                self._write_rows(rows)
        except UNREACHABLE:
            if self.spool is None or (rows and not self.spool.put(rows)):
                raise
            if rows:
                metrics.EVAL_SPOOLED.inc(len(rows))

    def _replay(self) -> None:
        """The write-behind's idle work: write what the spool holds once the database answers again."""
        if self.spool is not None and self.spool.pending()[0]:
            self._write([])

    def _write_rows(self, rows: list[records.BarLog | CandleRows]) -> None:
        for group in candle_groups([r for r in rows if isinstance(r, CandleRows)]):
            try:
                counts = self.store.add_candles(*group, self.settings.candle_tolerance)
            except Invalid as exc:  # one source's bad candles must not cost the rest of the batch
                logger.warning("trusted candles of %s %s refused: %s", group[0], group[1], exc)
                metrics.count_evaluation_drop("database", len(group[2]))
                continue
            count_conflicts(group[0], group[1], counts)
        bars = [r for r in rows if isinstance(r, records.BarLog)]
        if bars:
            metrics.EVAL_LOGGED.inc(self.store.log(bars)["bars"])

    async def run(self, versions: Sequence[str] = (), labels: metrics.MetricLabels | None = None) -> None:
        """Resolve covered bars, expire old ones and refresh the backlog and live gauges, forever."""
        first = True
        while True:
            try:
                resolved = await asyncio.to_thread(self.resolve_due)
                if (resolved or first) and labels is not None:
                    await asyncio.to_thread(self.publish_live, versions, labels)
                    first = False
            except DatabaseResting:
                pass
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again next time
                logger.warning("outcome resolution failed: %s", type(exc).__name__)
            try:
                async with asyncio.timeout(self.settings.resolve_every_seconds):
                    await self._kick.wait()
            except TimeoutError:
                pass
            self._kick.clear()

    def resolve_due(self) -> int:
        """One pass: flush queued rows, resolve what is covered, expire the stale; bars resolved."""
        self.writer.flush()
        with self.resolve_backoff:
            return resolve_pending(self.store, self.rule, self.label_params(), self.expiry)

    def close(self, timeout: float = 10.0) -> bool:
        """Flush every queued row (SIGTERM); False if rows were left after timeout seconds."""
        return self.writer.close(timeout)


class DatabaseResting(RuntimeError):
    """The database failed recently: background work waits before trying it again."""


# A database that refuses or drops connections (or is resting after that): spool, do not drop.
UNREACHABLE = (DatabaseResting, OperationalError, InterfaceError, PoolTimeout)


class Backoff:
    """A context that refuses to run while a pause after failures lasts (1 s, doubling up to 30 s)."""

    def __init__(self, first_s: float = 1.0, max_s: float = 30.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self._pause, self._until = 0.0, 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            if time.monotonic() < self._until:
                raise DatabaseResting(f"the database failed; next try in {self._until - time.monotonic():.1f} s")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        with self._lock:
            if kind is None:
                self._pause = 0.0
            elif not issubclass(kind, DatabaseResting):
                self._pause = min(self.max_s, max(self.first_s, 2 * self._pause))
                self._until = time.monotonic() + self._pause


def timeframe_seconds(timeframe: str) -> float:
    """ "1h" -> 3600; NaN for a timeframe this does not parse."""
    seconds = instruments.timeframe_seconds(timeframe)
    return math.nan if seconds is None else float(seconds)
