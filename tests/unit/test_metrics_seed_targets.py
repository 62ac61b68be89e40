"""The seed's targets as gauges: live Stage 1 recall and precision per version, with the reversals behind them."""

from __future__ import annotations

import math

import pytest

from aifx import metrics

pytestmark = pytest.mark.unit


def value(gauge, version: str) -> float:
    return float(gauge.labels(version=version)._value.get())


def test_set_live_publishes_stage1_recall_precision_and_reversals() -> None:
    labels = metrics.MetricLabels(["v9.7"])
    live = {"hit_rate": 0.5, "mean_pips": 3.0, "signals": 10, "stage1_recall": 0.8, "stage1_precision": 0.4}
    metrics.set_live(labels, "v9.7", {**live, "tp": 8, "fn": 2, "fp": 12})
    assert value(metrics.LIVE_STAGE1_RECALL, "v9.7") == pytest.approx(0.8)
    assert value(metrics.LIVE_STAGE1_PRECISION, "v9.7") == pytest.approx(0.4)
    assert value(metrics.LIVE_STAGE1_REVERSALS, "v9.7") == 10


def test_undefined_figures_are_nan() -> None:
    labels = metrics.MetricLabels(["v9.8"])
    metrics.set_live(labels, "v9.8", {"stage1_recall": None, "stage1_precision": None, "tp": 0, "fn": 0})
    assert math.isnan(value(metrics.LIVE_STAGE1_RECALL, "v9.8"))
    assert math.isnan(value(metrics.LIVE_STAGE1_PRECISION, "v9.8"))
    assert value(metrics.LIVE_STAGE1_REVERSALS, "v9.8") == 0
