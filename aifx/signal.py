"""Prediction semantics (SPEC 5): pure functions from stage probabilities to a signal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

HOLD, LONG, SHORT = "hold", "long", "short"
SIGNALS = (LONG, SHORT, HOLD)
# Direction for a version without a Stage 2 model: a reversal after a decline is a long.
NO_STAGE2_RULE = "no stage 2 model: direction by rule, sum of ret_1 over the window < 0 (decline) -> long, else short"


@dataclass(frozen=True)
class Decision:
    """What the two stages say about one window."""

    signal: str
    confidence: float
    stage1_prob: float
    stage2_prob: float | None
    direction_source: str  # "threshold", "stage2" or "rule"

    @property
    def reversal_detected(self) -> bool:
        return self.signal != HOLD


def fires(stage1_prob: float, threshold: float) -> bool:
    """Stage 1 fires when P(reversal) reaches the version's threshold."""
    return stage1_prob >= threshold


def hold(stage1_prob: float) -> Decision:
    """No reversal: hold with confidence 1 - stage1_prob."""
    return Decision(HOLD, 1.0 - stage1_prob, stage1_prob, None, "threshold")


def with_stage2(stage1_prob: float, stage2_prob: float) -> Decision:
    """Reversal with a Stage 2 probability P(long)."""
    signal = LONG if stage2_prob >= 0.5 else SHORT
    confidence = (stage1_prob + max(stage2_prob, 1.0 - stage2_prob)) / 2.0
    return Decision(signal, confidence, stage1_prob, stage2_prob, "stage2")


def by_rule(stage1_prob: float, ret_1_sum: float) -> Decision:
    """Reversal without Stage 2: long after a decline, short otherwise; confidence is stage1_prob."""
    signal = LONG if ret_1_sum < 0 else SHORT
    return Decision(signal, stage1_prob, stage1_prob, None, "rule")


def decide(stage1_prob: float, threshold: float, stage2_prob: float | None = None) -> Decision:
    """The seed's two-stage rule when Stage 2 is known (or Stage 1 does not fire)."""
    if not fires(stage1_prob, threshold):
        return hold(stage1_prob)
    if stage2_prob is None:
        raise ValueError("stage 1 fired: a stage 2 probability (or the rule) is needed")
    return with_stage2(stage1_prob, stage2_prob)


def window_ret_1_sum(rows: np.ndarray, features: tuple[str, ...]) -> float:
    """Sum of the ret_1 column over a (window x features) sample (the log return of the window)."""
    return float(rows[:, features.index("ret_1")].sum())


def factors(decision: Decision) -> dict[str, object]:
    """The `factors` block of a prediction."""
    out: dict[str, object] = {
        "reversal_detected": decision.reversal_detected,
        "direction": decision.signal if decision.reversal_detected else None,
    }
    if decision.direction_source == "rule":
        out["direction_source"] = NO_STAGE2_RULE
    elif decision.direction_source == "stage2":
        out["direction_source"] = "stage 2 model"
    return out


def consensus(signals: Iterable[str]) -> tuple[str | None, bool]:
    """(the signal every version agrees on or None, whether they disagree)."""
    counts = Counter(signals)
    if len(counts) == 1:
        return next(iter(counts)), False
    return None, len(counts) > 1
