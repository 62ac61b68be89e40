"""Response bodies of the signal routes (GET /reversal/signals/latest, the stream's `data`)."""

from __future__ import annotations

from pydantic import Field

from aifx.http.response_base import Body
from aifx.http.responses import PredictionData


class VersionSignal(Body):
    """One loaded version's decision on the bar."""

    signal: str = Field(description="long, short or hold")
    confidence: float
    stage1_prob: float
    stage2_prob: float | None


class SignalEvent(Body):
    """One bar that trusted candles closed: the active version's answer and every version's decision."""

    id: int = Field(description="the event id: send it as Last-Event-ID to resume after it")
    pair: str
    timeframe: str
    bar_time: str = Field(description="the bar's open time, ISO-8601 UTC")
    active_version: str | None
    signal: PredictionData | None = Field(description="the active version's answer, as predict returns it")
    versions: dict[str, VersionSignal] = Field(description="version -> its decision on the bar")
