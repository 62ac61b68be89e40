"""What the read and candles routes compute: models with their live figures, trusted candles stored and scored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from aifx import instruments
from aifx.candles import Candles
from aifx.serving.context import get_logger
from aifx.serving.errors import ApiError, now_iso
from aifx.serving.inputs import to_candles
from aifx.serving.outcome_log import DatabaseResting
from aifx.serving.parts import Parts
from aifx.serving.registry import HIDDEN_REASON, VersionRegistry, describe
from aifx.serving.schemas import TIMEFRAME_PATTERN, CandlesRequest, QueryTime
from aifx.serving.trusted_bars import score_closed_bars
from aifx.trade import UnknownPair, pip_size

logger = get_logger("bentoml.aifx.api")


class LiveFilters(BaseModel):
    """Filters of the `live` block: pair, timeframe, bars since a time."""

    model_config = ConfigDict(extra="forbid")

    pair: str | None = Field(default=None, max_length=32)
    timeframe: str | None = Field(default=None, pattern=TIMEFRAME_PATTERN)
    since: QueryTime | None = Field(default=None, description="ISO-8601; bars at or after this time")


async def models_with_live(p: Parts, filters: LiveFilters | None = None) -> dict[str, Any]:
    """GET /reversal/models with each version's `live` block (left out when the database does not answer)."""
    data = await models(p.registry)
    blocks = await _live(p, [m["version"] for m in data["versions"]], filters or LiveFilters())
    return {**data, "versions": [m | ({"live": blocks[m["version"]]} if blocks else {}) for m in data["versions"]]}


async def model_with_live(p: Parts, version: str, filters: LiveFilters | None = None) -> dict[str, Any]:
    """GET /reversal/models/{version} with its `live` block."""
    data = await model(p.registry, version)
    blocks = await _live(p, [version], filters or LiveFilters())
    return data | ({"live": blocks[version]} if blocks else {})


async def _live(p: Parts, versions: list[str], f: LiveFilters) -> dict[str, dict[str, Any]]:
    if p.outcomes is None:
        return {}
    since = f.since.replace(tzinfo=f.since.tzinfo or UTC) if f.since else None
    try:
        return await p.outcomes.live(versions, f.pair, f.timeframe, since)
    except UnknownPair as exc:
        raise ApiError(f"pair: {exc}", status=422) from None
    except (SQLAlchemyError, DatabaseResting) as exc:  # the models answer without their live figures
        logger.warning("live figures unavailable: %s", type(exc).__name__)
        return {}


async def add_candles(p: Parts, body: CandlesRequest) -> dict[str, Any]:
    """Store trusted candles, score the bars they close and resolve what they cover; the counts of new,
    duplicate and conflicting candles and of bars scored."""
    if p.outcomes is None:
        raise ApiError("the outcome loop is off (AIFX_OUTCOMES=false): candles are not stored", status=409,
                       reason="conflict")  # fmt: skip
    inst = instruments.instrument(body.pair, p.registry.settings.pip_sizes)
    if inst is None:
        raise ApiError(f"pair: {body.pair!r:.40} is not in the instrument table ({unknown_pair(body.pair)}); "
                       "the service reads extra pip sizes from AIFX_PIP_SIZES", status=422)  # fmt: skip
    timeframe = instruments.canonical_timeframe(body.timeframe)
    if timeframe is None:
        raise ApiError(f"timeframe: {body.timeframe!r:.20} is not a timeframe such as 1m, 15m, 1h, 4h, 1d or 1w",
                       status=422)  # fmt: skip
    candles = to_candles(body.data)
    check_trusted_candles(candles, inst, timeframe)
    counts = await p.outcomes.add_candles(inst.name, timeframe, candles)
    posted = [t.replace(tzinfo=UTC) for t in candles.timestamp.astype("datetime64[us]").astype(datetime)]
    scored = await score_closed_bars(p.predictor, p.outcomes, inst.name, timeframe, posted, p.signals)
    counted = {k: int(counts.get(k, 0)) for k in ("inserted", "duplicates", "conflicts")}
    return {"pair": inst.name, "timeframe": timeframe, **counted, "bars_scored": scored}


def check_trusted_candles(candles: Candles, inst: instruments.Instrument, timeframe: str) -> None:
    """422 for a candle off the timeframe's grid, more than one bar in the future, or outside the band."""
    seconds = instruments.timeframe_seconds(timeframe) or 0
    micros = candles.timestamp.astype("datetime64[us]").astype(np.int64)
    grid = instruments.grid_seconds(seconds) * 1_000_000
    off = np.flatnonzero(micros % grid)
    if off.size:
        raise ApiError(f"data[{off[0]}]: timestamp is not on the {timeframe} grid (bars start every "
                       f"{grid // 1_000_000} s from 1970-01-01T00:00:00Z)", status=422)  # fmt: skip
    future = np.flatnonzero(micros > (datetime.now(UTC).timestamp() + seconds) * 1e6)
    if future.size:
        raise ApiError(f"data[{future[0]}]: timestamp is more than one {timeframe} bar in the future; post closed "
                       "candles only", status=422)  # fmt: skip
    bad = np.flatnonzero(~((candles.low >= inst.low) & (candles.high <= inst.high)))
    if bad.size:
        raise ApiError(f"data[{bad[0]}]: {inst.describe_band()} (a price in another unit or a bad tick)", status=422)


def unknown_pair(pair: str) -> str:
    """Why a pair is not in the instrument table, from the pip table's own message."""
    try:
        pip_size(pair)
    except UnknownPair as exc:
        return str(exc)
    return "only configured pairs and the pip table's are logged"


async def models(registry: VersionRegistry) -> dict[str, Any]:
    """Active version, default, fallback order and every configured version."""
    avail = await registry.availability()
    active = await registry.active_version()
    return {
        "active_version": active,
        "default": registry.settings.default_version,
        "fallback_order": list(registry.catalog.order),
        "versions": [describe(registry.catalog.entries[v], avail, active) for v in registry.catalog.order],
    }


async def model(registry: VersionRegistry, version: str) -> dict[str, Any]:
    """One configured version."""
    entry = registry.check_known(version)
    return describe(entry, await registry.availability(), await registry.active_version())


async def health(registry: VersionRegistry, details: bool = True) -> tuple[dict[str, Any], int]:
    """The seed's flat health body and its HTTP status; without details, no failure reasons."""
    avail = await registry.availability()
    active = await registry.active_version()
    status = "unhealthy" if not avail.loaded else "degraded" if avail.failed else "healthy"
    body = {
        "status": status,
        "model_loaded": bool(avail.loaded),
        "model_version": active,
        "timestamp": now_iso(),
        "environment": registry.settings.environment,
        "loaded_versions": list(avail.loaded),
        "failed_versions": dict(avail.failed) if details else dict.fromkeys(avail.failed, HIDDEN_REASON),
    }
    return body, 200 if avail.loaded else 503
