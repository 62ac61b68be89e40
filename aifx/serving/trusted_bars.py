"""Bars closed by trusted candles, scored by every loaded version: what the evaluation log learns without a token.

A backend posts each closed candle (POST /reversal/candles). Every bar those candles close that may be
logged (aifx/instruments.py: on its grid, not in the future, not older than the expiry) and is not in
the log yet is scored here by every loaded version on the trusted window ending at it, and written
before the route answers. Anonymous predict requests write nothing to the log: a decision counts only
when it was made on the trusted candles of its bar, so no request without a token can choose the
bars, prices or decisions the scoreboard sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from aifx import instruments, metrics
from aifx import signal as sig
from aifx.candles import Candles
from aifx.serving import inputs
from aifx.serving.answers import prediction_data
from aifx.serving.catalog import VersionEntry
from aifx.serving.errors import ApiError
from aifx.serving.log_rows import LOOKBACK, Bar, bar_log
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.predictor import Predictor
from aifx.serving.signal_hub import SignalHub
from aifx.serving.stored_inputs import as_candles
from aifx.serving.windows import Prepared
from aifx.versions import VersionSpec

MAX_BARS = 1_000  # bars scored per call: one POST holds at most 1,000 candles


@dataclass
class _Scoring:
    """One bar and the versions' windows on it."""

    bar: Bar
    windows: list[Prepared]


async def score_closed_bars(predictor: Predictor, log: OutcomeLog, pair: str, timeframe: str,
                            times: Sequence[datetime], hub: SignalHub | None = None) -> int:  # fmt: skip
    """Score the bars at `times` (canonical pair and timeframe): log those not logged yet, publish the signal
    event of those without one; the bars written to the log."""
    now = datetime.now(UTC)
    due = sorted({t for t in times if instruments.bar_problem(t, timeframe, now, log.expiry) is None})[-MAX_BARS:]
    if not due:
        return 0
    unlogged = set(due) - await log.logged(pair, timeframe, due)
    unpublished = set()
    if hub is not None:  # (a hub with no subscribers has len 0: test it against None)
        unpublished = set(due) - await asyncio.to_thread(hub.store.published, pair, timeframe, due)
    todo = sorted(unlogged | unpublished)
    if not todo:
        return 0
    try:
        entries = [(v, e) for v, e in await predictor.registry.loaded_entries() if e.spec is not None]
    except ApiError:
        return 0  # no version serves: nothing to score (the candles are stored all the same)
    need = max([LOOKBACK, *(e.spec.min_candles for _, e in entries if e.spec is not None)])
    series = await log.history(pair, timeframe, todo[0], todo[-1], need)
    jobs = _jobs(log, pair, timeframe, as_candles(series), todo, entries)
    flat = [p for j in jobs for p in j.windows]
    decisions = iter(await predictor.score_each(flat, served=0) if flat else [])
    active = await predictor.registry.active_version() if hub is not None else None
    rows, events = [], []
    for job in jobs:
        made = [(p, d) for p in job.windows if isinstance(d := next(decisions), sig.Decision)]
        if len(made) < len(job.windows):  # a model output that is no probability: that decision alone is lost
            metrics.count_evaluation_drop("shadow", len(job.windows) - len(made))
        if not made:
            continue
        if job.bar.time in unlogged:
            rows.append(bar_log(job.bar, [(p.version, d, 0) for p, d in made]))
        if hub is not None and job.bar.time in unpublished:
            events.append((pair, timeframe, job.bar.time, signal_event(log, job.bar, made, active)))
    written = await log.log_now(rows)
    if hub is not None and events:
        metrics.count_signal_events(pair, timeframe, len(await asyncio.to_thread(hub.store.publish, events)))
        hub.kick()
    return written


def signal_event(log: OutcomeLog, bar: Bar, made: list[tuple[Prepared, sig.Decision]], active: str | None) -> dict:
    """A bar's event: the active version's answer as predict returns it (with `trade`), every version's decision."""
    versions = {p.version: {"signal": d.signal, "confidence": d.confidence, "stage1_prob": d.stage1_prob,
                            "stage2_prob": d.stage2_prob} for p, d in made}  # fmt: skip
    answer = None
    for p, d in made:
        if p.version == active:
            answer = prediction_data(bar.pair, bar.timeframe, p.version, d, p.in_domain)
            levels = log.trade(bar, d.signal)
            if levels is not None:
                answer["trade"] = levels
    return {"active_version": active, "signal": answer, "versions": versions}


def _jobs(log: OutcomeLog, pair: str, timeframe: str, candles: Candles, due: list[datetime],
          entries: list[tuple[str, VersionEntry]]) -> list[_Scoring]:  # fmt: skip
    """Each due bar with the trusted window of every version that has enough candles, rows computed together."""
    stamps = candles.timestamp.astype("datetime64[us]").astype(datetime)
    index = {t.replace(tzinfo=UTC): i for i, t in enumerate(stamps)}
    jobs: list[_Scoring] = []
    tails: list[tuple[Candles, VersionSpec]] = []
    for t in due:
        i = index.get(t)
        if i is None:
            continue
        bar = log.bar(pair, timeframe, candles.slice(max(0, i + 1 - LOOKBACK), i + 1))
        if bar is None or bar.problem is not None:
            metrics.count_evaluation_drop("bar")
            continue
        job = _Scoring(bar, [])
        for version, entry in entries:
            spec = entry.spec
            if spec is None or i + 1 < spec.min_candles:
                continue
            tail = candles.slice(i + 1 - spec.min_candles, i + 1)
            job.windows.append(Prepared(version, entry, _NO_ROWS, tail.close, pair, timeframe,
                                        entry.in_domain(pair, timeframe)))  # fmt: skip
            tails.append((tail, spec))
        if job.windows:
            jobs.append(job)
    rows = inputs.candle_rows_many(tails)
    it = iter(rows)
    for job in jobs:
        kept = []
        for p in job.windows:
            r = next(it)
            if isinstance(r, np.ndarray):
                p.rows = r
                kept.append(p)
        job.windows = kept
    return [j for j in jobs if j.windows]


_NO_ROWS = np.empty((0, 0))
