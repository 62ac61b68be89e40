"""Request step 3, the bar: which bar a request is about (for its `trade` levels and the outcome loop) and, for
a trusted request about a bar the log may hold, the shadow windows of the other loaded versions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aifx import metrics
from aifx.candles import Candles
from aifx.serving.errors import ApiError
from aifx.serving.log_rows import Bar
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.registry import VersionRegistry
from aifx.serving.schemas import PredictRequest
from aifx.serving.window_cache import WindowCache
from aifx.serving.windows import Prepared, cached_window


@dataclass
class Job:
    """A request's served window, its bar and the shadow windows scored with it."""

    served: Prepared
    found: Bar | None = None
    shadows: list[Prepared] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    logs: bool = False  # a trusted request about a bar that may be logged
    # An anonymous request's bar is found only when asked for (a long or short's `trade`, an experiment's
    # bar key): a hold answered outside an experiment never needs it (~6 % of a predict's CPU).
    finder: Callable[[], Bar | None] | None = None
    asked: tuple[str, str, Candles] | None = None  # what the finder looks at: (pair, timeframe, candles)

    @property
    def bar(self) -> Bar | None:
        """The request's bar (None: no trade levels)."""
        if self.finder is not None:
            self.found, self.finder = self.finder(), None
        return self.found


async def plan(
    outcomes: OutcomeLog | None,
    registry: VersionRegistry,
    cache: WindowCache,
    req: PredictRequest,
    served: Prepared,
    candles: Candles | None,
    trusted: bool,
    defer: bool = False,
) -> Job:
    """The served window, the request's bar and, for a trusted request about a bar that may be logged, the
    shadow windows of the other versions (in the same stage calls, once per bar)."""
    if outcomes is None or candles is None:
        return Job(served)
    if not trusted:
        asked = (req.pair, req.timeframe, candles)
        return Job(served, finder=lambda: outcomes.bar(*asked), asked=asked)
    bar = outcomes.bar(req.pair, req.timeframe, candles)
    if bar is None or bar.problem is not None:
        if bar is not None:
            metrics.count_evaluation_drop("bar")
        return Job(served, bar)
    outcomes.trust(bar, candles, "predict")
    try:
        entries = dict(await registry.loaded_entries())
    except ApiError:  # nothing else serves now: log the served decision alone
        return Job(served, bar, logs=True)
    shadows = []
    for version in outcomes.shadow_versions(bar, served.version, list(entries)):
        try:
            shadows.append(cached_window(cache, req, version, entries[version], candles, defer))
        except ApiError:  # e.g. too few candles for that version: the shadow is dropped, never the request
            metrics.count_evaluation_drop("shadow")
    return Job(served, bar, shadows, logs=True)


def find_bars(outcomes: OutcomeLog | None, jobs: Sequence[Job]) -> None:
    """The bars of many anonymous jobs found together (OutcomeLog.bars), before their answers ask for them."""
    todo = [job for job in jobs if job.finder is not None and job.asked is not None]
    if outcomes is None or not todo:
        return
    for job, bar in zip(todo, outcomes.bars([job.asked for job in todo if job.asked is not None]), strict=True):
        job.found, job.finder = bar, None


def bar_key(job: Job) -> tuple[str, str, datetime] | None:
    """(pair, timeframe, bar time) an experiment prediction is about, for its market outcome (None for a bar
    the log may not hold: off its grid, in the future, too old)."""
    return job.bar.key if job.bar is not None and job.bar.problem is None else None
