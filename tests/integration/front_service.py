"""A test-only BentoML service that composes the engine with `bentoml.depends` (issue 16)."""

from __future__ import annotations

from typing import Any

import bentoml

from service import ReversalEngine


@bentoml.service(workers=1, traffic={"timeout": 60})
class SignalDesk:
    """Another team's Bento: it gets its signals from the engine's native APIs."""

    engine = bentoml.depends(ReversalEngine)

    @bentoml.api
    async def desk_signal(self, pair: str, timeframe: str, data: list[dict[str, Any]]) -> dict[str, Any]:
        """The engine's prediction for these candles, and the version that made it."""
        out = await self.engine.to_async.predict(pair=pair, timeframe=timeframe, data=data)
        models = await self.engine.to_async.list_models()
        return {
            "signal": out.signal,
            "stage1_prob": out.stage1_prob,
            "model_version": out.model_version,
            "active_version": models.active_version,
        }
