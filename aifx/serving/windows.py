"""Request step 4, windows: each version's rows for a request (from features or candles), with the worker's cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from aifx.candles import Candles
from aifx.serving import inputs
from aifx.serving.catalog import VersionEntry
from aifx.serving.errors import ApiError
from aifx.serving.schemas import InvalidItem, PredictRequest, _Inputs
from aifx.serving.window_cache import Scored, WindowCache, content_key
from aifx.versions import VersionSpec

_NO_ROWS = np.empty((0, 0))


@dataclass
class Prepared:
    """One version's window for one request, ready for the stages."""

    version: str
    entry: VersionEntry
    rows: np.ndarray
    closes: np.ndarray | None = None
    pair: str = ""  # the request's pair and timeframe: the input-drift window it counts in
    timeframe: str = ""
    in_domain: bool | None = None  # inside the version's training domain (None: the domain is unknown)
    tail: Candles | None = None  # deferred: the candles `rows` will be computed from, with the batch's others
    key: bytes | None = None  # the window's content key in the worker's WindowCache (candle windows only)
    scored: Scored | None = None  # what the cache already knew about this window

    @property
    def spec(self) -> VersionSpec:
        assert self.entry.spec is not None
        return self.entry.spec


def window(
    req: _Inputs,
    version: str,
    entry: VersionEntry,
    candles: Any = None,
    defer: bool = False,
    tail: Candles | None = None,
) -> Prepared:
    """Rows for a version from `features` (when present) or from the request's candles.

    defer: only check the candles and keep the tail (candle_tail's, when the caller has it); `fill_rows`
    computes the rows with the batch's others.
    """
    spec = entry.spec
    assert spec is not None
    in_domain = entry.in_domain(req.pair, req.timeframe)
    if req.features:
        rows = inputs.feature_rows(req.features, spec)
        return Prepared(version, entry, rows, None, req.pair, req.timeframe, in_domain)
    if candles is None:
        candles = inputs.to_candles(req.data or [])
    if defer:
        tail = tail if tail is not None else inputs.candle_tail(candles, spec)
        return Prepared(version, entry, _NO_ROWS, candles.close, req.pair, req.timeframe, in_domain, tail)
    rows = inputs.candle_rows(candles, spec)
    return Prepared(version, entry, rows, candles.close, req.pair, req.timeframe, in_domain)


def cached_window(
    cache: WindowCache, req: _Inputs, version: str, entry: VersionEntry, candles: Candles | None, defer: bool = False
) -> Prepared:
    """window(), with the rows and stage outputs of a window already scored in this worker from the cache."""
    spec = entry.spec
    if candles is None or req.features or cache.size <= 0 or spec is None:
        return window(req, version, entry, candles, defer)
    tail = inputs.candle_tail(candles, spec)
    key = content_key(models_of(entry), tail)
    hit = cache.get(key)
    if hit is None:
        prepared = window(req, version, entry, candles, defer, tail)
    else:
        in_domain = entry.in_domain(req.pair, req.timeframe)
        prepared = Prepared(version, entry, hit.rows, candles.close, req.pair, req.timeframe, in_domain, scored=hit)
    prepared.key = key
    return prepared


def fill_rows(deferred: Sequence[Prepared]) -> dict[int, ApiError]:
    """Compute the deferred windows of a batch together; the error of each window that fails, by id()."""
    pending = [p for p in deferred if p.tail is not None]
    rows = inputs.candle_rows_many([(p.tail, p.spec) for p in pending if p.tail is not None])
    failed: dict[int, ApiError] = {}
    for p, r in zip(pending, rows, strict=True):
        p.tail = None
        if isinstance(r, ApiError):
            failed[id(p)] = r
        else:
            p.rows = r
    return failed


def request_candles(req: _Inputs) -> Candles | None:
    """The request's candles (validated once for every version), or None when features or no candles are sent."""
    return None if req.features or not req.data else inputs.to_candles(req.data)


def batch_candles(items: Sequence[PredictRequest | InvalidItem]) -> dict[int, Candles | ApiError]:
    """The candles of every batch item that sends them, parsed together (or the error of each bad one)."""
    sends = {i: r.data for i, r in enumerate(items) if isinstance(r, PredictRequest) and not r.features and r.data}
    return dict(zip(sends, inputs.to_candles_many(list(sends.values())), strict=True))


def models_of(entry: VersionEntry) -> str:
    """The version and its stage models' store tags (the window cache key's model part)."""
    return entry.models
