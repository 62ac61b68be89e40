"""Bars closed by trusted candles, scored by every loaded version: what the evaluation log learns without a token.

A backend posts each closed candle (POST /reversal/candles). Every bar those candles close that may be
logged (aifx/instruments.py: on its grid, not in the future, not older than the expiry) and is not in
the log yet is scored here by every loaded version on the trusted window ending at it, and written
before the route answers. Anonymous predict requests write nothing to the log: a decision counts only
when it was made on the trusted candles of its bar, so no request without a token can choose the
bars, prices or decisions the scoreboard sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from aifx import instruments, metrics
from aifx import signal as sig
from aifx.api import inputs
from aifx.api.catalog import VersionEntry
from aifx.api.errors import ApiError
from aifx.api.outcome_log import LOOKBACK, Bar, OutcomeLog, bar_log
from aifx.api.predictor import Predictor, Prepared
from aifx.api.stored_inputs import as_candles
from aifx.candles import Candles
from aifx.versions import VersionSpec

MAX_BARS = 1_000  # bars scored per call: one POST holds at most 1,000 candles


@dataclass
class _Scoring:
    """One bar and the versions' windows on it."""

    bar: Bar
    windows: list[Prepared]


async def score_closed_bars(predictor: Predictor, log: OutcomeLog, pair: str, timeframe: str,
                            times: Sequence[datetime]) -> int:  # fmt: skip
    """Score and log the bars at `times` (canonical pair and timeframe) not logged yet; the bars written."""
    now = datetime.now(UTC)
    due = sorted({t for t in times if instruments.bar_problem(t, timeframe, now, log.expiry) is None})[-MAX_BARS:]
    if due:
        done = await log.logged(pair, timeframe, due)
        due = [t for t in due if t not in done]
    if not due:
        return 0
    try:
        entries = [(v, e) for v, e in await predictor.registry.loaded_entries() if e.spec is not None]
    except ApiError:
        return 0  # no version serves: nothing to score (the candles are stored all the same)
    need = max([LOOKBACK, *(e.spec.min_candles for _, e in entries if e.spec is not None)])
    series = await log.history(pair, timeframe, due[0], due[-1], need)
    candles = as_candles(series)
    jobs = _jobs(log, pair, timeframe, candles, due, entries)
    flat = [p for j in jobs for p in j.windows]
    decisions = await predictor.score_each(flat, served=0) if flat else []
    out = iter(decisions)
    rows = []
    for job in jobs:
        made = [(p.version, d, 0) for p in job.windows if isinstance(d := next(out), sig.Decision)]
        if len(made) < len(job.windows):  # a model output that is no probability: that decision alone is lost
            metrics.count_evaluation_drop("shadow", len(job.windows) - len(made))
        if made:
            rows.append(bar_log(job.bar, made))
    return await log.log_now(rows)


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
