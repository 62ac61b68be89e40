"""What the routes use: the version registry, the predictor and the A/B tests."""

from __future__ import annotations

from dataclasses import dataclass

from aifx.api.ab_tests import ABTests
from aifx.api.predictor import Predictor
from aifx.api.registry import VersionRegistry


@dataclass(frozen=True)
class Parts:
    """The entry service's parts, attached to the app at start-up."""

    registry: VersionRegistry
    predictor: Predictor
    ab: ABTests
