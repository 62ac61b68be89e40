"""A test-only Bento of another team: it reaches a running engine by URL alone (`bentoml.depends(url=...)`)."""

from __future__ import annotations

import os
from typing import Any

import bentoml

# Read when `bentoml serve` imports this file: the engine this Bento talks to (no code of the engine's is imported).
ENGINE_URL = os.environ.get("AIFX_ENGINE_URL", "http://127.0.0.1:3000")


@bentoml.service(workers=1, traffic={"timeout": 60})
class RemoteDesk:
    """Signals from an engine deployed elsewhere: its native APIs, found through the engine's /schema.json."""

    engine = bentoml.depends(url=ENGINE_URL)

    @bentoml.api
    async def desk_signal(self, pair: str, timeframe: str, data: list[dict[str, Any]]) -> dict[str, Any]:
        """The engine's prediction for these candles, and the version it says is active."""
        out = await self.engine.to_async.predict(pair=pair, timeframe=timeframe, data=data)
        models = await self.engine.to_async.list_models()
        return {
            "signal": out["signal"],
            "stage1_prob": out["stage1_prob"],
            "model_version": out["model_version"],
            "active_version": models["active_version"],
        }
