"""Shared by the in-process route tests: the pair of every body and the seed's response envelope."""

from __future__ import annotations

from datetime import datetime

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


def assert_envelope(body: dict, success: bool = True) -> None:
    seed = {"success", "data", "error", "timestamp"}  # the seed's envelope; an error also names its request
    assert set(body) == (seed if success else seed | {"request_id"})
    assert body["success"] is success
    datetime.fromisoformat(body["timestamp"])
    if success:
        assert body["error"] is None
    else:
        assert body["data"] is None and isinstance(body["error"], str) and body["error"]
