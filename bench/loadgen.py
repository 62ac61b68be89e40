"""Closed-loop load generator: N requests at concurrency C, latency percentiles and throughput."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
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


async def _run(url: str, bodies: list[dict], concurrency: int, timeout: float) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            nonlocal errors
            for body in queue:
                start = time.perf_counter()
                try:
                    resp = await client.post(url, json=body)
                    ok = resp.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append((time.perf_counter() - start) * 1000)
                errors += 0 if ok else 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


def run_load(label: str, url: str, bodies: list[dict], concurrency: int, timeout: float = 30.0) -> RunResult:
    """Send every body once with `concurrency` workers; a non-200 or transport error counts as an error."""
    latencies, errors, seconds = asyncio.run(_run(url, bodies, concurrency, timeout))
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]).tolist()
    return RunResult(label, concurrency, len(bodies), errors, seconds, p50, p90, p99)
