"""Shared by the fault tests: closed-loop load that records every call, health waits, and a database to cut."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

TOKEN = "fault-admin-token-0123456789abcdef"  # at least 32 characters
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
CLIENT_TIMEOUT = 10.0
CONCURRENCY = 8


@dataclass(frozen=True)
class Call:
    """One request of the load: when it ran, what it was and how it ended."""

    kind: str
    start: float
    end: float
    status: int | None  # None: transport error or client timeout
    body: dict[str, Any] | None
    failure: str | None = None


class Load:
    """Closed-loop load from a background thread until stop(); every call is recorded."""

    def __init__(self, url: str, requests: Callable[[int], tuple[str, bytes]], keep_alive: bool = True) -> None:
        self.url = url
        self.requests = requests
        self.keep_alive = keep_alive  # False: a new connection per request, so every live worker takes some
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=CLIENT_TIMEOUT + 5)

    async def _run(self) -> None:
        limits = httpx.Limits(
            max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY if self.keep_alive else 0
        )
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits, headers=headers) as client:
            await asyncio.gather(*(self._worker(client, w) for w in range(CONCURRENCY)))

    async def _worker(self, client: httpx.AsyncClient, worker: int) -> None:
        i = worker
        while not self._stop.is_set():
            kind, body = self.requests(i)
            self.calls.append(await self._one(client, kind, body))
            i += CONCURRENCY

    async def _one(self, client: httpx.AsyncClient, kind: str, body: bytes) -> Call:
        start = time.monotonic()
        try:
            r = await client.post(f"{self.url}/reversal/predict", content=body)
        except httpx.HTTPError as exc:
            return Call(kind, start, time.monotonic(), None, None, f"{type(exc).__name__}: {exc}")
        try:
            payload = r.json()
        except ValueError:
            payload = None
        return Call(kind, start, time.monotonic(), r.status_code, payload)

    def wait_until(self, done: Callable[[list[Call]], bool], timeout: float) -> None:
        """Let the load run until done(calls) or timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.calls):
            time.sleep(0.25)


def wait_healthy(url: str, in_a_row: int = 10, timeout: float = 60.0) -> None:
    """Until /health says healthy in_a_row times on new connections (so from every API worker)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < in_a_row:
        assert time.monotonic() < deadline, f"{url} not healthy after {timeout}s"
        r = httpx.get(f"{url}/health", headers={"Connection": "close"}, timeout=10)
        streak = streak + 1 if r.status_code == 200 and r.json()["status"] == "healthy" else 0
        time.sleep(0 if streak else 0.5)


def predict_bodies(candle_json, n: int = 16) -> list[bytes]:
    """n different predict bodies (64 candles each), encoded once."""
    return [json.dumps({**PAIR, "data": candle_json(3000 + 41 * i, 64)}).encode() for i in range(n)]


def assert_clean_failures(calls: list[Call]) -> None:
    """Never a hang or a dropped connection; every failure a 503 with a message in the seed envelope."""
    lost = [c.failure for c in calls if c.status is None]
    assert not lost, f"{len(lost)} requests hung or lost their connection, e.g. {lost[:3]}"
    for c in calls:
        if c.status != 200:
            assert c.status == 503, (c.status, c.body)
            assert c.body and c.body["success"] is False and c.body["error"], c.body


@pytest.fixture
def fault_db(pg_server_url) -> Iterator[tuple[str, Callable[[bool], None]]]:
    """A fresh PostgreSQL database and a switch that refuses (False) or allows (True) connections to it."""
    name = f"aifx_fault_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def available(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}'))
            if not allowed:
                conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))

    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url, available
    finally:
        available(True)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
