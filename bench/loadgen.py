"""Closed-loop load generator: N requests at concurrency C, latency percentiles and throughput.

The client shares the 2 cores with the server it measures, so it is kept lean: bodies are
encoded once, each worker holds one keep-alive HTTP/1.1 connection and reads responses by
Content-Length (httpx costs ~1.5 ms of CPU per request here, this ~0.1 ms).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np


@dataclass(frozen=True)
class RunResult:
    """One load run's figures (latencies in milliseconds)."""

    label: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50: float
    p90: float
    p99: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        return (
            f"| {self.label} | {self.concurrency} | {self.requests} | {self.errors} | {self.rps:,.0f} "
            f"| {self.p50:.2f} | {self.p90:.2f} | {self.p99:.2f} |"
        )


HEADER = "| run | concurrency | requests | errors | req/s | p50 ms | p90 ms | p99 ms |\n" + "|---" * 8 + "|"


def encode_requests(url: str, bodies: list[dict]) -> list[bytes]:
    """Complete HTTP/1.1 POST requests, encoded once before the clock starts."""
    parts = urlsplit(url)
    head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    out = []
    for body in bodies:
        data = json.dumps(body, separators=(",", ":")).encode()
        out.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return out


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Status code of one response; the body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(ln.split(b":", 1)[1]) for ln in lines if ln.lower().startswith(b"content-length:")), None)
    if length is not None:
        await reader.readexactly(length)
        return status
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return status


async def _run(url: str, requests: list[bytes], concurrency: int, timeout: float) -> tuple[list[float], int, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    errors = 0
    queue = iter(requests)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    # Connections open one at a time, as a client pool grows, rather than in one burst
    # that a single server worker would accept whole.
    conns = []
    for _ in range(concurrency):
        conns.append(await connect())
        await asyncio.sleep(0.002)

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        try:
            for raw in queue:
                start = time.perf_counter()
                try:
                    writer.write(raw)
                    status = await asyncio.wait_for(_read_response(reader), timeout)
                    ok = status == 200
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    ok = False
                    writer.close()
                    reader, writer = await connect()
                latencies.append((time.perf_counter() - start) * 1000)
                errors += 0 if ok else 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in conns))
    return latencies, errors, time.perf_counter() - start


def run_load(label: str, url: str, bodies: list[dict], concurrency: int, timeout: float = 30.0) -> RunResult:
    """Send every body once with `concurrency` connections; a non-200 or transport error counts as an error."""
    latencies, errors, seconds = asyncio.run(_run(url, encode_requests(url, bodies), concurrency, timeout))
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]).tolist()
    return RunResult(label, concurrency, len(bodies), errors, seconds, p50, p90, p99)
