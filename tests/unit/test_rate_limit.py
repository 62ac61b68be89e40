"""The per-client rate limit: token buckets per bearer token or address, bounded memory."""

from __future__ import annotations

import pytest

from aifx.http.ratelimit import TokenBuckets, client_key
from aifx.settings import Settings

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


TOKEN = "rate-limit-admin-token-0123456789abcdef"


def scope(address: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"headers": list(headers), "client": (address, 5)}


def test_clients_are_keyed_by_a_valid_token_else_address():
    settings = Settings(admin_token=TOKEN)
    with_token = scope("10.0.0.1", (b"authorization", f"Bearer {TOKEN}".encode()))
    other_address = scope("10.0.0.2", (b"authorization", f"Bearer {TOKEN}".encode()))
    assert client_key(with_token, settings) == client_key(other_address, settings) == "token:admin"
    assert client_key(scope("10.0.0.1"), settings) == "addr:10.0.0.1"


def test_an_invalid_bearer_is_keyed_by_address():
    """Issue 29: a random bearer per request does not get a fresh bucket."""
    settings = Settings(admin_token=TOKEN)
    for bearer in (b"Bearer abc", b"Bearer " + TOKEN.encode() + b"x", b"bearer random-1"):
        assert client_key(scope("10.0.0.1", (b"authorization", bearer)), settings) == "addr:10.0.0.1"
    assert client_key(scope("10.0.0.1", (b"authorization", b"Bearer x")), Settings()) == "addr:10.0.0.1"


def test_forwarded_for_counts_only_from_a_trusted_proxy():
    xff = (b"x-forwarded-for", b"198.51.100.1, 203.0.113.5")
    assert client_key(scope("10.0.0.1", xff), Settings()) == "addr:10.0.0.1"
    proxied = Settings(trusted_proxies=("10.0.0.0/8",))
    assert client_key(scope("10.0.0.1", xff), proxied) == "addr:203.0.113.5"  # the last hop our proxy saw
    assert client_key(scope("192.0.2.9", xff), proxied) == "addr:192.0.2.9"  # not a proxy of ours
    assert client_key(scope("10.0.0.1", (b"x-forwarded-for", b"10.0.0.7")), proxied) == "addr:10.0.0.7"
