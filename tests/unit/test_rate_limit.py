"""The per-client rate limit: token buckets per bearer token or address, bounded memory."""

from __future__ import annotations

import pytest

from aifx.api.ratelimit import TokenBuckets, client_key

pytestmark = pytest.mark.unit


def test_a_burst_then_the_rate():
    now = [0.0]
    buckets = TokenBuckets(rate=10.0, burst=5, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(5)] == [0.0] * 5
    assert buckets.take("a") == pytest.approx(0.1)  # empty: one token every 0.1 s
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] = 0.25
    assert buckets.take("a") == 0.0 and buckets.take("a") == 0.0 and buckets.take("a") > 0.0


def test_memory_is_bounded_by_forgetting_the_oldest_clients():
    buckets = TokenBuckets(rate=1.0, burst=1, max_keys=100)
    for i in range(1000):
        buckets.take(f"client-{i}")
    assert len(buckets._buckets) == 100


def test_clients_are_keyed_by_token_else_address():
    with_token = {"headers": [(b"authorization", b"Bearer abc")], "client": ("10.0.0.1", 5)}
    other_address = {"headers": [(b"authorization", b"Bearer abc")], "client": ("10.0.0.2", 5)}
    assert client_key(with_token) == client_key(other_address) and "abc" not in client_key(with_token)
    assert client_key({"headers": [], "client": ("10.0.0.1", 5)}) == "addr:10.0.0.1"
