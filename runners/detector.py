"""Stage 1 service: P(reversal) for windows of features."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import bentoml

from aifx.settings import get_settings
from aifx.wire import StageBatch
from runners.inference import STAGE_SERVICE_CONFIG, Probabilities, StageModels
from runners.models import declare_models, stored_model

VERSIONS = get_settings().versions


@bentoml.service(**STAGE_SERVICE_CONFIG)
@declare_models(stage=1, versions=VERSIONS)
class ReversalDetector:
    """Loads every configured version's Stage 1 model at start and scores batches of windows."""

    model_refs: ClassVar[dict[str, Any]] = {}  # version -> BentoModel, set by declare_models

    def __init__(self) -> None:
        self.stage = StageModels.load(1, VERSIONS, self.model_refs)
        self.find = functools.partial(stored_model, stage=1)

    # async: the compiled model call (well under 1 ms per coalesced batch) costs less than a thread hop.
    @bentoml.api
    async def detect(self, batches: list[StageBatch]) -> Probabilities:
        """P(reversal) per window, batches in order."""
        if self.stage.lacks(batches):  # a version imported after the start: loaded once, off the event loop
            await self.stage.ensure([b.version for b in batches], self.find)
        return self.stage.predict(batches)

    @bentoml.api
    async def status(self, versions: list[str] | None = None) -> dict:
        """Which versions loaded, and why the others did not; first loads any of `versions` (configured, imported
        since the start: the entry names them after a reload) this worker lacks."""
        if versions:
            await self.stage.ensure(versions, self.find)
        return self.stage.status()
