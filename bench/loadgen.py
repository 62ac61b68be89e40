"""Closed-loop load generator: N requests at concurrency C, latency percentiles and throughput.

The client shares the 2 cores with the server it measures, so it is kept lean: bodies are
encoded once, each worker holds one keep-alive HTTP/1.1 connection and reads responses by
Content-Length (httpx costs ~1.5 ms of CPU per request here, this ~0.1 ms).
"""

from __future__ import annotations

import asyncio
import json
import re
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
    fired: float | None = None  # share of 200 answers whose (first) signal is long or short: the mix sent

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        return (
            f"| {self.label} | {self.concurrency} | {self.requests} | {self.errors} | {self.rps:,.0f} "
            f"| {self.p50:.2f} | {self.p90:.2f} | {self.p99:.2f} | {_share(self.fired)} |"
        )


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


HEADER = (
    "| run | concurrency | requests | errors | req/s | p50 ms | p90 ms | p99 ms | fired |\n" + "|---" * 9 + "|"
)  # fired: answers that are long or short (Stage 2 ran), not hold
SIGNAL = re.compile(rb'"signal":\s*"(\w+)"')


def encode_requests(url: str, bodies: list[dict]) -> list[bytes]:
    """Complete HTTP/1.1 POST requests, encoded once before the clock starts."""
    parts = urlsplit(url)
    head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    out = []
    for body in bodies:
        data = json.dumps(body, separators=(",", ":")).encode()
        out.append(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes | None]:
    """Status code of one response and the signal it names first (None without one)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = next((int(ln.split(b":", 1)[1]) for ln in lines if ln.lower().startswith(b"content-length:")), None)
    if length is not None:
        body = await reader.readexactly(length)
    else:
        chunks = []
        while True:  # chunked
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunks.append((await reader.readexactly(size + 2))[:-2])
            if size == 0:
                break
        body = b"".join(chunks)
    found = SIGNAL.search(body)
    return status, found.group(1) if found else None


async def _run(
    url: str, requests: list[bytes], concurrency: int, timeout: float
) -> tuple[list[float], int, float, list[bytes]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    signals: list[bytes] = []
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
                    status, signal = await asyncio.wait_for(_read_response(reader), timeout)
                    ok = status == 200
                    if ok and signal is not None:
                        signals.append(signal)
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
    return latencies, errors, time.perf_counter() - start, signals


def run_load(label: str, url: str, bodies: list[dict], concurrency: int, timeout: float = 30.0) -> RunResult:
    """Send every body once with `concurrency` connections; a non-200 or transport error counts as an error."""
    latencies, errors, seconds, signals = asyncio.run(_run(url, encode_requests(url, bodies), concurrency, timeout))
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]).tolist()
    fired = sum(s != b"hold" for s in signals) / len(signals) if signals else None
    return RunResult(label, concurrency, len(bodies), errors, seconds, p50, p90, p99, fired)
