"""Helpers of the served signal tests: replicas on one database, stream readers, a connection-cutting proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from aifx_client import AsyncAIFXClient, Reconnect, SignalEvent
from tests.integration.conftest import Server, start_server

PAIR, TIMEFRAME = "EUR/USD", "1h"


def replica_home(model_store, work: Path) -> Path:
    """A BENTOML_HOME of its own (`bentoml serve` clears its home's metrics directory) with the session's models."""
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "models").exists():
        os.symlink(model_store.home / "models", home / "models")
    return home


def start_replicas(model_store, work: Path, names: tuple[str, ...], **env: str) -> list[Server]:
    """Replicas started together (they migrate the shared schema under its lock), each ready before return."""
    servers: list[Server] = []
    try:
        for name in names:
            home = replica_home(model_store, work / name)
            servers.append(start_server(model_store, work / name, wait=False, BENTOML_HOME=str(home), **env))
        for server in servers:
            server.wait_ready()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample of a replica's /metrics (None when absent)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@dataclass
class Reader:
    """A subscriber: the events it received with the time each arrived (perf_counter)."""

    url: str
    want: int
    after: int | None
    events: list[SignalEvent] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    reconnects: int = 0

    async def read(self, until: int | None = None, policy: Reconnect | None = None) -> None:
        """Events until `until` in all (default: want), resuming after the last one received."""
        stop = self.want if until is None else until
        async with AsyncAIFXClient(self.url, timeout=10) as client:
            last = self.events[-1].id if self.events else self.after
            stream = client.signals(PAIR, TIMEFRAME, last_event_id=last, reconnect=policy)
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    self.events.append(event)
                    self.arrived.append(time.perf_counter())
                    if len(self.events) >= stop:
                        break
            self.reconnects += client.stats.reconnects


class CuttingProxy:
    """127.0.0.1:port -> upstream: each connection is cut (reset) after `budget` bytes of response."""

    def __init__(self, upstream_port: int, budget: int) -> None:
        self.upstream_port, self.budget = upstream_port, budget
        self.cuts = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def upstream() -> None:
            while data := await reader.read(65_536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            sent = 0
            while sent < self.budget and (data := await up_reader.read(4_096)):
                writer.write(data)
                sent += len(data)
                await writer.drain()
            self.cuts += sent >= self.budget

        up = asyncio.create_task(upstream())
        try:
            await downstream()
        except OSError:
            pass
        finally:
            up.cancel()
            for w in (writer, up_writer):
                w.transport.abort()  # a reset, not a clean end: as a dropped network path
