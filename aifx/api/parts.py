"""What the routes use: the version registry, the predictor, the A/B tests, the outcome log and the promoter."""

from __future__ import annotations

from dataclasses import dataclass

from aifx.api.ab_tests import ABTests
from aifx.api.outcome_log import OutcomeLog
from aifx.api.predictor import Predictor
from aifx.api.promoter import Promoter
from aifx.api.registry import VersionRegistry
from aifx.api.signal_hub import SignalHub


@dataclass(frozen=True)
class Parts:
    """The entry service's parts, attached to the app at start-up."""

    registry: VersionRegistry
    predictor: Predictor
    ab: ABTests
    outcomes: OutcomeLog | None = None
    promoter: Promoter | None = None
    signals: SignalHub | None = None
