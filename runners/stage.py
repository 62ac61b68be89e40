"""The stage runners, run inside each service worker: Stage 1 ReversalDetector and Stage 2 DirectionClassifier."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from runners.inference import StageModels
from runners.models import stored_model


class Window(NamedTuple):
    """One request's unscaled (window x features) rows for one version."""

    version: str
    rows: np.ndarray
    request_id: str = ""


class StageRunner:
    """One stage's LiteRT models for every configured version; scores windows vectorised per version.

    Created once per entry worker and called from its event loop only (LiteRT interpreters are not
    thread-safe); a model call takes microseconds, far less than a thread hop.
    """

    stage: ClassVar[int]

    def __init__(self, versions: Sequence[str], refs: Mapping[str, Any]) -> None:
        self.models = StageModels.load(self.stage, versions, dict(refs))
        self._find = functools.partial(stored_model, stage=self.stage)

    def score(self, windows: Sequence[Window]) -> list[float]:
        """Calibrated probability per window, in order: one stacked model call per version."""
        by_version: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            by_version.setdefault(w.version, []).append(i)
        out = [0.0] * len(windows)
        for version, idx in by_version.items():
            model = self.models.models.get(version)
            if model is None:
                raise KeyError(f"stage {self.stage} has no model for version {version!r}")
            probs = model(np.stack([windows[i].rows for i in idx]))
            for i, p in zip(idx, probs.tolist(), strict=True):
                out[i] = p
        return out

    async def status(self, load: Sequence[str] = ()) -> dict[str, Any]:
        """Which versions loaded and why the others did not; first loads any of `load` (imported since the start)."""
        if load:
            await self.models.ensure(load, self._find)
        return self.models.status()


class ReversalDetector(StageRunner):
    """Stage 1: P(reversal on the latest candle) per window."""

    stage = 1

    def detect(self, windows: Sequence[Window]) -> list[float]:
        """P(reversal) per window, in order."""
        return self.score(windows)


class DirectionClassifier(StageRunner):
    """Stage 2: P(long) per window where Stage 1 fired."""

    stage = 2

    def classify(self, windows: Sequence[Window]) -> list[float]:
        """P(long) per window, in order."""
        return self.score(windows)
