"""Issue 29 against a real `bentoml serve`: slow uploads, random bearers, forwarded headers, foreign hosts.

Before: eight uploads that announce 1 MB and send one byte held the per-worker body budget (an
ordinary predict waited 10 s, then 503); a random bearer per request escaped the rate limit (20 of
20 got 200); /metrics, /docs.json and /schema.json were not limited.
"""

from __future__ import annotations

import socket
import time
import uuid

import httpx
import pytest

pytestmark = pytest.mark.integration

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
SLOW = 8


def slow_upload(port: int, path: str = "/reversal/predict/batch", announced: int = 1_000_000) -> socket.socket:
    """A connection that announces a 1 MB body and sends one byte of it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {announced}\r\n\r\n{{"
    )
    s.sendall(head.encode())
    return s


def status_of(s: socket.socket) -> int:
    data = s.recv(4096)
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def test_slow_uploads_do_not_starve_a_predict_and_are_cut_at_the_deadline(server_factory, candle_json):
    server = server_factory(AIFX_BODY_READ_SECONDS="4")
    body = {**PAIR, "data": candle_json(3200, 80)}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/reversal/predict", json=body).status_code == 200  # warm
        slow = [slow_upload(server.port) for _ in range(SLOW)]
        try:
            time.sleep(0.5)  # every slow upload is open and reading
            for _ in range(3):
                started = time.monotonic()
                r = c.post("/reversal/predict", json=body)
                assert r.status_code == 200, r.text
                assert time.monotonic() - started < 1.0
            statuses = [status_of(s) for s in slow]  # the read deadline answers them
        finally:
            for s in slow:
                s.close()
    # Each slow upload announcing 1 MB waits for one of the worker's two large-body slots, then is cut at
    # its read deadline (408); one that waited past the budget's wait gets 503 "busy": both free the worker.
    assert set(statuses) <= {408, 503} and statuses.count(408) >= 2, statuses


def test_random_bearers_and_bentoml_routes_are_rate_limited(server_factory):
    server = server_factory(AIFX_RATE_LIMIT_PER_SECOND="1", AIFX_RATE_LIMIT_BURST="2")
    with httpx.Client(base_url=server.url, timeout=30) as c:
        anonymous = [c.get("/reversal/models").status_code for _ in range(20)]
        time.sleep(3)
        bearers = [
            c.get("/reversal/models", headers={"Authorization": f"Bearer {uuid.uuid4().hex}"}).status_code
            for _ in range(20)
        ]
        time.sleep(3)
        forwarded = [
            c.get("/reversal/models", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(20)
        ]
        for path in ("/metrics", "/docs.json", "/schema.json"):
            time.sleep(3)
            codes = [c.get(path).status_code for _ in range(10)]
            assert codes.count(429) >= 4, (path, codes)
        assert c.get("/health").status_code == 200 and c.get("/readyz").status_code == 200  # probes: never
    # two workers, each with its own buckets: at most 2 x burst get through at once
    for codes in (anonymous, bearers, forwarded):
        assert codes.count(429) >= 14, (anonymous, bearers, forwarded)


def test_tokenless_admin_routes_refuse_foreign_hosts_and_forwarded_requests(server_factory):
    server = server_factory()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        before = c.get("/reversal/models").json()["data"]["active_version"]
        other = "v3.0" if before != "v3.0" else "v3.1"
        rebinding = {"Host": f"evil.example:{server.port}", "Origin": f"http://evil.example:{server.port}",
                     "Sec-Fetch-Site": "same-origin"}  # fmt: skip
        for headers in (rebinding, {"Host": "evil.example"}, {"X-Forwarded-For": "198.51.100.3"}):
            r = c.post(f"/reversal/models/{other}/switch", headers=headers)
            assert r.status_code == 403, r.text
        assert c.get("/reversal/models").json()["data"]["active_version"] == before
        r = c.post(f"/reversal/models/{before}/switch")  # the local operator still can
        assert r.status_code == 200, r.text
