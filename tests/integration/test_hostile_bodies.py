"""Memory under hostile bodies against a real `bentoml serve` (issue 11, finding 4).

64 concurrent 1 MB bodies built to cost the most memory once parsed (empty lists and objects,
an invalid batch item next to a valid one so the request stays in flight while the stage answers,
100 items of zero-filled rows) must leave every worker alive (same pids) and the server's whole
process tree (arbiter, 2 entry workers, 3 stage workers) under 2 GB RSS, sampled every 20 ms.
Before the fix (1,024 concurrent requests, 1 MB on every route, invalid items kept as dicts) the
entry workers held ~21 MB of Python objects per such request.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter

import httpx
import psutil
import pytest

pytestmark = pytest.mark.integration

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
CONCURRENT = 64
ROUNDS = 2
BODY_BYTES = 1_000_000  # AIFX_MAX_BODY_BYTES: the batch route's limit
RSS_LIMIT = 2_000_000_000


def valid_item() -> bytes:
    rows = [[round(0.01 * ((i + j) % 7), 2) for j in range(12)] for i in range(20)]
    return json.dumps({**PAIR, "features": rows}).encode()


def fill(prefix: bytes, unit: bytes, suffix: bytes, last: bytes) -> bytes:
    """prefix + unit * n + last + suffix, as close to BODY_BYTES as fits."""
    n = (BODY_BYTES - len(prefix) - len(suffix) - len(last)) // len(unit)
    body = prefix + unit * n + last + suffix
    assert len(body) <= BODY_BYTES
    return body


def hostile_bodies() -> list[tuple[str, bytes]]:
    """The shapes that cost the most per byte (measured: 36-62 MB peak while parsing 1 MB)."""
    ok = valid_item()
    rows_item = b'{"pair":"a","timeframe":"b","features":[' + b"[0,0,0,0,0,0,0,0,0,0,0,0]," * 370 + b"[0]]}"
    return [
        ("valid item + 333k empty feature rows", fill(b'{"items":[' + ok + b',{"features":[', b"[],", b"]}]}", b"[]")),
        ("valid item + 333k empty candles", fill(b'{"items":[' + ok + b',{"data":[', b"{},", b"]}]}", b"{}")),
        ("333k empty lists as items", fill(b'{"items":[', b"[],", b"]}", b"[]")),
        ("333k empty objects as items", fill(b'{"items":[', b"{},", b"]}", b"{}")),
        ("100 items of zero rows", b'{"items":[' + b",".join([rows_item] * 100) + b"]}"),
        ("valid item + one 500k-number row", fill(b'{"items":[' + ok + b',{"features":[[', b"0,", b"]]}]}", b"0")),
        ("nesting 1M deep", b'{"items":' + b"[" * (BODY_BYTES - 20) + b"]}"),
    ]


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_rss(pid: int) -> int:
    total = 0
    for p in tree(pid):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakRss:
    """Samples the process tree's RSS in a thread until stopped."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid = pid
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            time.sleep(self.every)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


async def send_all(url: str, bodies: list[bytes]) -> list[tuple[int | None, str]]:
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:

        async def one(body: bytes) -> tuple[int | None, str]:
            try:
                r = await client.post(f"{url}/reversal/predict/batch", content=body)
            except httpx.HTTPError as exc:
                return None, f"{type(exc).__name__}: {exc}"
            return r.status_code, r.text[:300]

        return list(await asyncio.gather(*(one(b) for b in bodies)))


def test_64_concurrent_hostile_1mb_bodies_leave_workers_alive_and_rss_under_2gb(server_factory, capsys):
    server = server_factory()
    pid = server.proc.pid
    workers = sorted(p.pid for p in tree(pid)[1:])
    kinds = hostile_bodies()
    before = tree_rss(pid)
    answers: list[tuple[int | None, str]] = []
    started = time.monotonic()
    with PeakRss(pid) as peak:
        for _ in range(ROUNDS):
            bodies = [kinds[i % len(kinds)][1] for i in range(CONCURRENT)]
            answers += asyncio.run(send_all(server.url, bodies))
    seconds = time.monotonic() - started
    time.sleep(1.0)
    after = tree_rss(pid)
    statuses = Counter(status for status, _ in answers)
    with capsys.disabled():
        print(
            f"\n{ROUNDS} x {CONCURRENT} concurrent ~1 MB hostile bodies in {seconds:.1f} s: "
            f"statuses {dict(statuses)}; process tree RSS {before / 1e6:,.0f} MB before, "
            f"peak {peak.peak / 1e6:,.0f} MB, {after / 1e6:,.0f} MB after"
        )
    lost = [text for status, text in answers if status is None]
    assert not lost, lost[:3]
    # 408: a body the client did not finish sending within AIFX_BODY_READ_SECONDS (issue 29) while 128 such
    # bodies share two cores; a 4xx that says so, never a 5xx other than 503 "busy"
    allowed = {200, 400, 408, 422, 503}
    assert set(statuses) <= allowed, [a for a in answers if a[0] not in allowed][:3]
    busy = [text for status, text in answers if status == 503]
    assert all("busy with other large request bodies" in text for text in busy), busy[:3]
    assert len(busy) <= len(answers) // 10, f"{len(busy)} of {len(answers)} waited too long"
    assert peak.peak < RSS_LIMIT, f"peak RSS {peak.peak / 1e6:,.0f} MB"
    assert sorted(p.pid for p in tree(pid)[1:]) == workers, "a worker died or was replaced"
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    r = httpx.post(f"{server.url}/reversal/predict", content=valid_item(), timeout=10)
    assert r.status_code == 200, r.text
