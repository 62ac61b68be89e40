"""What the routes use: the version registry, the predictor, the A/B tests, the outcome log and the promoter."""

from __future__ import annotations

from dataclasses import dataclass

from aifx.serving.ab_tests import ABTests
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.predictor import Predictor
from aifx.serving.promoter import Promoter
from aifx.serving.registry import VersionRegistry
from aifx.serving.signal_hub import SignalHub


@dataclass(frozen=True)
class Parts:
    """The entry service's parts, attached to the app at start-up."""

    registry: VersionRegistry
    predictor: Predictor
    ab: ABTests
    outcomes: OutcomeLog | None = None
    promoter: Promoter | None = None
    signals: SignalHub | None = None
