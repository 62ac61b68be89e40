"""Windows already scored, keyed by the candles' content: many users asking about one bar cost one stage call.

A window's feature rows and stage probabilities depend only on the version's models and on the
candles its rows are computed from (the last min_candles), so a key over exactly those bytes and
the stage models' tags can never give one request another's result. Invalid model outputs are
never kept. One cache per entry worker, least recently used first out.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from aifx.candles import Candles


@dataclass
class Scored:
    """A window's rows and, once scored, its Stage 1 and (where it fired) Stage 2 probabilities."""

    rows: np.ndarray
    p1: float | None = None
    p2: float | None = None


class WindowCache:
    """At most `size` scored windows (0: nothing is kept)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Scored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: bytes) -> Scored | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: bytes, item: Scored) -> None:
        if self.size <= 0:
            return
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def content_key(models: str, tail: Candles) -> bytes:
    """A 128-bit digest of the models' identity and every value the window is computed from."""
    digest = hashlib.blake2b(f"{models}|{len(tail)}".encode(), digest_size=16)
    for column in (tail.timestamp, tail.open, tail.high, tail.low, tail.close):
        digest.update(np.ascontiguousarray(column).tobytes())
    return digest.digest()
