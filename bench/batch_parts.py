"""In-process cost per item of the batch route's two stacked steps, against one item at a time.

Usage: python -m bench.batch_parts. 100 predict items of 64 real candles (the bench's bodies):
candles parsed and checked one by one (`to_candles`) and together (`to_candles_many`), then each
version's window computed one by one (`window_features`) and in one pass (`windows_features`); also
what reading a body costs and what a window cache key costs.
"""

from __future__ import annotations

import functools
import json
import timeit
from collections.abc import Callable
from typing import cast

import numpy as np

from aifx.candles import Candles
from aifx.features import FEATURE_SETS, min_candles, window_features, windows_features
from aifx.serving.inputs import to_candles, to_candles_many
from aifx.serving.schemas import CandleIn, PredictRequest
from aifx.serving.window_cache import content_key
from bench.payloads import predict_bodies

ITEMS = 100


def per_item_us(fn: Callable[[], object], number: int = 50) -> float:
    return timeit.timeit(fn, number=number) / number / ITEMS * 1e6


def _one_by_one(tails: list[Candles], names: tuple[str, ...]) -> list[np.ndarray]:
    return [window_features(t, names, 20) for t in tails]


def main() -> int:
    datas = [cast(list[CandleIn], b["data"]) for b in predict_bodies(ITEMS, seed=3)]
    alone = per_item_us(lambda: [to_candles(d) for d in datas])
    together = per_item_us(lambda: to_candles_many(datas))
    print(f"candles: {alone:.1f} µs per item alone, {together:.1f} together")
    raw = [json.dumps(b).encode() for b in predict_bodies(ITEMS, seed=3)]
    parse = per_item_us(lambda: [json.loads(r) for r in raw])
    validate = per_item_us(lambda: [PredictRequest.model_validate_json(r) for r in raw])
    print(f"body: {validate:.1f} µs per item read and validated by pydantic-core, {parse:.1f} for json.loads alone")
    candles = [to_candles(d) for d in datas]
    for version, names in sorted(FEATURE_SETS.items()):
        tails = [c.tail(min_candles(names, 20)) for c in candles]
        alone = per_item_us(functools.partial(_one_by_one, tails, names))
        together = per_item_us(functools.partial(windows_features, tails, names, 20))
        print(f"{version} window: {alone:.1f} µs per item alone, {together:.1f} together")
    keyed = per_item_us(lambda: [content_key("v3.1,stage1-tag,stage2-tag", c.tail(53)) for c in candles])
    print(f"window cache key: {keyed:.1f} µs per window")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
