"""Predict request bodies of real candles from the bundled data file."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from training.candles_csv import load_candles_csv

DATA = Path(__file__).resolve().parent.parent / "data" / "FOREX_EURUSD_1H_ASK.csv"


@cache
def bundled_candles():
    """The bundled EUR/USD 1h candles (2017)."""
    return load_candles_csv(DATA)


def predict_bodies(
    count: int,
    candles_per_request: int = 64,
    seed: int = 0,
    pair: str = "EUR/USD",
    distinct: bool = False,
    price_scale: float = 1.0,
) -> list[dict[str, object]]:
    """`count` requests, each the 64 candles ending at a random bar (with distinct, every bar at most once).

    price_scale multiplies every price (rounded to 5 decimals, as quotes are): windows of other contents, so a
    window cache that saw the same bars at another scale cannot answer them.
    """
    c = bundled_candles()
    rng = np.random.default_rng(seed)
    if distinct:
        if count > len(c) - candles_per_request:
            raise ValueError(f"only {len(c) - candles_per_request} distinct bars")
        ends = rng.permutation(np.arange(candles_per_request, len(c)))[:count]
    else:
        ends = rng.integers(candles_per_request, len(c), size=count)
    bodies: list[dict[str, object]] = []
    for end in ends.tolist():
        s = c.slice(end - candles_per_request, end)
        prices = [(col * price_scale).round(5).tolist() if price_scale != 1.0 else col.tolist()
                  for col in (s.open, s.high, s.low, s.close)]  # fmt: skip
        data = [
            {"timestamp": f"{t}Z"[:19] + "Z", "open": o, "high": h, "low": lo, "close": cl}
            for t, o, h, lo, cl in zip(s.timestamp.astype("datetime64[s]").astype(str), *prices, strict=True)
        ]
        bodies.append({"pair": pair, "timeframe": "1h", "data": data})
    return bodies


if __name__ == "__main__":  # python -m bench.payloads > predict.json: one request body for curl
    import json

    print(json.dumps(predict_bodies(1, seed=1)[0]))
