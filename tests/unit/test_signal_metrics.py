"""Signal metrics per pair and timeframe (the stalled-candles alert's inputs): bounded labels, a stall deadline
that skips the currency weekend and never moves back, subscribers counted per series in a hub."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aifx import metrics
from aifx.instruments import stall_deadline

pytestmark = pytest.mark.unit


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "bar, timeframe, due",
    [
        ("2026-01-07T10:00", "1h", "2026-01-07T12:15"),  # Wednesday: the next bar closes at 12:00
        ("2026-01-07T10:00", "1m", "2026-01-07T10:17"),  # the next 1m bar closes at 10:02, + 15 min
        ("2026-01-09T18:00", "1h", "2026-01-09T20:15"),  # Friday before the close: no weekend in between
        ("2026-01-09T20:00", "1h", "2026-01-11T23:15"),  # the wait spans the weekend: 49 h later
        ("2026-01-11T22:00", "1h", "2026-01-12T00:15"),  # Sunday's first bar: a normal hour again
        ("2026-01-08T22:00", "1d", "2026-01-12T23:15"),  # Thursday's day: Monday's day closes Monday 22:00
        ("2026-01-05T00:00", "1w", "2026-01-19T00:15"),  # a weekly bar spans its weekend already
        ("2026-01-09T16:00", "4h", "2026-01-12T01:15"),
    ],
)
def test_the_stall_deadline_is_the_next_close_plus_a_grace_past_the_weekend(bar, timeframe, due):
    assert stall_deadline(utc(bar), timeframe) == utc(due)


def test_labels_are_bounded_to_the_metric_timeframes():
    assert metrics.signal_series("EUR/USD", "4h") == ("EUR/USD", "4h")
    assert metrics.signal_series("EUR/USD", "7m") == ("EUR/USD", "other")
    metrics.signal_seen("EUR/USD", "7m", utc("2026-01-07T10:00"))
    assert ("EUR/USD", "other") not in metrics._SIGNAL_DUE  # no deadline for what the alert does not watch


def test_a_late_older_bar_moves_no_deadline_back():
    gauge = metrics.SIGNAL_DUE.labels(pair="NZD/CAD", timeframe="1h")
    metrics.signal_seen("NZD/CAD", "1h", utc("2026-01-07T10:00"))
    newest = stall_deadline(utc("2026-01-07T10:00"), "1h").timestamp()
    metrics.signal_seen("NZD/CAD", "1h", utc("2026-01-07T08:00"))
    assert gauge._value.get() == newest
    metrics.signal_seen("NZD/CAD", "1h", utc("2026-01-07T11:00"))
    assert gauge._value.get() == newest + 3600


def test_a_hub_counts_subscribers_per_series_and_other_timeframes_together(tmp_path):
    from aifx.serving.signal_hub import SignalHub
    from experiments import ExperimentStore
    from experiments.signals import SignalStore

    hub = SignalHub(SignalStore(ExperimentStore(f"sqlite:///{tmp_path}/s.db")), 10, 10, 1.0)

    def count(timeframe: str) -> float:
        return metrics.SIGNAL_SUBSCRIBERS.labels(pair="CAD/CHF", timeframe=timeframe)._value.get()

    subs = [hub.subscribe("CAD/CHF", tf, "c") for tf in ("1h", "1h", "7m", "9m")]
    assert (count("1h"), count("other")) == (2, 2)
    hub.unsubscribe(subs[2])
    hub.unsubscribe(subs[2])  # twice: counted once
    assert (count("1h"), count("other")) == (2, 1)
    for sub in subs:
        hub.unsubscribe(sub)
    assert (count("1h"), count("other")) == (0, 0)
