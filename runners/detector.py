"""Stage 1 service: P(reversal) for windows of features."""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml

from aifx.api.schemas import StageWindow
from aifx.settings import get_settings
from runners.inference import KEEP_CONNECTIONS, StageModels
from runners.models import declare_models

VERSIONS = get_settings().versions


@bentoml.service(workers=1, traffic={"timeout": 30, "max_concurrency": 512}, runner_connection=KEEP_CONNECTIONS)
@declare_models(stage=1, versions=VERSIONS)
class ReversalDetector:
    """Loads every configured version's Stage 1 model at start and scores batches of windows."""

    model_refs: ClassVar[dict[str, Any]] = {}  # version -> BentoModel, set by declare_models

    def __init__(self) -> None:
        self.stage = StageModels.load(1, VERSIONS, self.model_refs)

    @bentoml.api(batchable=True, max_batch_size=128, max_latency_ms=2000)
    def detect(self, windows: list[StageWindow]) -> list[float]:
        """P(reversal) per window."""
        return self.stage.predict(windows)

    @bentoml.api
    def status(self) -> dict:
        """Which versions loaded, and why the others did not."""
        return self.stage.status()
