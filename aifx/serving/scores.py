"""Request steps 5 and 6, scores and decisions: Stage 1 for every window, Stage 2 only where it fires, and the
signal rules' decision of each window (or the error of a window whose model output is not a probability)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from aifx import signal as sig
from aifx.promotion import Tally
from aifx.serving import context, stages
from aifx.serving.errors import ApiError, BadCandles, StageUnavailable, error_id, with_error_id
from aifx.serving.window_cache import Scored, WindowCache
from aifx.serving.windows import Prepared
from runners.stage import DirectionClassifier, ReversalDetector, Window

logger = context.get_logger("bentoml.aifx.predictor")


class Scorer:
    """The worker's two stage runners over windows; remembers valid outputs in the window cache."""

    def __init__(self, detector: ReversalDetector, direction: DirectionClassifier, cache: WindowCache) -> None:
        self.detector = detector
        self.direction = direction
        self.cache = cache
        self.health = Tally()  # scored and failed windows per version, read by the promoter

    def decide(self, batch: Sequence[Prepared]) -> list[sig.Decision | ApiError]:
        """Each window's decision, or its own error: one window's NaN fails only the request it belongs to."""
        if not batch:
            return []
        try:
            out = self._decide(batch, context.current() or "")
        except Exception:
            for p in batch:  # the stage call failed for every version in it (a promotion guardrail)
                self.health.record(p.version, False)
            raise
        for p, d in zip(batch, out, strict=True):
            self.health.record(p.version, isinstance(d, sig.Decision))
        return out

    def _decide(self, batch: Sequence[Prepared], rid: str) -> list[sig.Decision | ApiError]:
        p1: list[Any] = [p.scored.p1 if p.scored is not None else None for p in batch]
        need1 = [i for i, prob in enumerate(p1) if prob is None]
        if need1:
            found = stages.run(self.detector.detect, 1, [Window(batch[i].version, batch[i].rows, rid) for i in need1])
            for i, prob in zip(need1, found, strict=True):
                p1[i] = prob
        decisions: list[sig.Decision | ApiError | None] = [None] * len(batch)
        need2 = []
        for i, (p, prob) in enumerate(zip(batch, p1, strict=True)):
            if not is_probability(prob):
                decisions[i] = invalid_output(1, p.version, prob)
            elif not sig.fires(prob, p.spec.threshold):
                decisions[i] = sig.hold(prob)
            elif p.entry.has_stage2:
                need2.append(i)
            else:
                decisions[i] = sig.by_rule(prob, decline_evidence(p))
        p2 = {i: s.p2 for i in need2 if (s := batch[i].scored) is not None and s.p2 is not None}
        call2 = [i for i in need2 if i not in p2]
        if call2:
            windows = [Window(batch[i].version, batch[i].rows, rid) for i in call2]
            p2.update(zip(call2, stages.run(self.direction.classify, 2, windows), strict=True))
        for i in need2:
            ok = is_probability(p2[i])
            decisions[i] = sig.with_stage2(p1[i], p2[i]) if ok else invalid_output(2, batch[i].version, p2[i])
        self._remember(batch, p1, p2)
        return [d for d in decisions if d is not None]

    def _remember(self, batch: Sequence[Prepared], p1: list[Any], p2: dict[int, float]) -> None:
        """Keep the valid probabilities of candle windows for later requests about the same candles."""
        for i, p in enumerate(batch):
            if p.key is None or not is_probability(p1[i]):
                continue
            scored = p.scored or Scored(p.rows)
            scored.p1 = float(p1[i])
            if i in p2 and is_probability(p2[i]):
                scored.p2 = float(p2[i])
            self.cache.put(p.key, scored)


def is_probability(value: Any) -> bool:
    """A model output the signal rules can use: a finite number in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and 0.0 <= number <= 1.0


def invalid_output(stage: int, version: str, value: Any) -> ApiError:
    """503 for a window whose stage output is not a probability (a model fault; nothing is served or counted)."""
    eid = error_id()
    logger.error("error %s: Stage %d of %s returned %r, not a probability", eid, stage, version, value)
    message = (
        f"Stage {stage} of model version {version} returned {value!r:.40} for this request's window, not a "
        "probability in [0, 1]; no prediction was served; retry later or name another version"
    )
    return StageUnavailable(with_error_id(message, eid))


def decline_evidence(p: Prepared) -> float:
    """Log return over the window: the ret_1 column's sum, or from closes when ret_1 is absent."""
    if "ret_1" in p.spec.features:
        return sig.window_ret_1_sum(p.rows, p.spec.features)
    if p.closes is not None and len(p.closes) > p.spec.window:
        return float(np.log(p.closes[-1] / p.closes[-p.spec.window - 1]))
    raise BadCandles(f"{p.version} has no Stage 2 and no ret_1 feature: send candles (`data`) for its direction")
