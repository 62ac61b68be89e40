"""Soak test: the service under sustained mixed traffic, with admin changes, checked for 5xx and memory growth.

Usage: python -m soak.run [--seconds 60] [--concurrency 32] [--postgres]   (make soak, make soak-pg).
With --postgres the state lives in a fresh schema of the local PostgreSQL ($AIFX_TEST_PG_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test), dropped afterwards, and experiment predictions
must keep p99 <= 250 ms. Needs the models in the
BentoML store (make models). Starts `bentoml serve` with configuration.yaml, an admin token and a
fresh SQLite state database, warms it up, then runs the mixed traffic: predictions with and without
a user id, batches, compares, /metrics and experiment reads, a version switch every 5 s and
experiment create / activate / stop cycles. Exit status 1 unless there were no 5xx (nor transport
errors, timeouts or unexpected 4xx) and the server's process tree grew less than 10 % in RSS from
the end of the warm-up to the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.payloads import predict_bodies
from bench.run import free_port, start, stop, tree_rss_mb
from soak.client import Connection, encode

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "soak-admin-token-0123456789abcdef"  # at least 32 characters
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
VERSIONS = ("v3.1", "v3.0")
SWITCH_EVERY = 5.0
EXPERIMENT_EVERY = 10.0  # an experiment is active for this long, then stopped and the next one created
MAX_RSS_GROWTH = 0.10
EXPERIMENT_P99_MS = 250.0  # --postgres: predictions recorded under an experiment
# One cycle of a worker's requests (weights of the mix).
MIX = ["predict"] * 9 + ["predict_user"] * 5 + ["compare"] * 2 + ["batch", "metrics", "experiment_metrics"]


@dataclass
class Stats:
    """Per route: statuses, latencies (ms) and a few error bodies."""

    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    samples: list[str] = field(default_factory=list)

    def add(self, route: str, status: int, body: bytes, started: float) -> None:
        self.statuses[route][status] += 1
        self.latencies[route].append((time.perf_counter() - started) * 1000)
        if (status == 0 or status >= 400) and len(self.samples) < 10:
            self.samples.append(f"{route} {status}: {body[:300].decode(errors='replace')}")

    def count(self, test: Callable[[int], bool]) -> int:
        """Responses whose status passes test."""
        return sum(n for c in self.statuses.values() for s, n in c.items() if test(s))


@dataclass
class Shared:
    """What the admin task changes and the workers read."""

    experiment_id: str | None = None
    stop_at: float = 0.0


class Traffic:
    """Pre-encoded request bodies of the mix."""

    def __init__(self, host: str) -> None:
        self.host = host
        bodies = predict_bodies(64, seed=7)
        users = [{**bodies[u % 64], "user_id": f"user-{u}"} for u in range(2000)]
        self.predict = [encode("POST", "/reversal/predict", host, b) for b in bodies]
        self.predict_user = [encode("POST", "/reversal/predict", host, b) for b in users]
        self.compare = [encode("POST", "/reversal/compare", host, b) for b in bodies[:16]]
        batches = [{"items": bodies[i : i + 5]} for i in range(0, 60, 5)]
        self.batch = [encode("POST", "/reversal/predict/batch", host, b) for b in batches]
        self.metrics = encode("GET", "/metrics", host)

    def request(self, route: str, i: int, shared: Shared) -> bytes:
        if route == "experiment_metrics":
            eid = shared.experiment_id
            path = f"/reversal/experiments/{eid}/metrics" if eid else "/reversal/experiments"
            return encode("GET", path, self.host)
        if route == "metrics":
            return self.metrics
        pool = getattr(self, route)
        return pool[i % len(pool)]


async def worker(n: int, conn: Connection, traffic: Traffic, shared: Shared, stats: Stats) -> None:
    """Closed loop over the mix until stop_at."""
    for i in itertools.count(n * 7):
        if time.monotonic() >= shared.stop_at:
            break
        route = MIX[i % len(MIX)]
        started = time.perf_counter()
        status, body = await conn.send(traffic.request(route, i, shared))
        stats.add(route, status, body, started)
    conn.close()


async def admin(conn: Connection, host: str, shared: Shared, stats: Stats, tag: str) -> None:
    """A version switch every SWITCH_EVERY s; experiments created, activated and stopped every EXPERIMENT_EVERY s."""
    start_at = time.monotonic()
    switches = 0
    cycles = 0
    while time.monotonic() < shared.stop_at:
        now = time.monotonic() - start_at
        if now >= switches * SWITCH_EVERY:
            await call(conn, stats, "switch", "POST", f"/reversal/models/{VERSIONS[switches % 2]}/switch", host)
            switches += 1
        if now >= cycles * EXPERIMENT_EVERY:
            await experiment_cycle(conn, host, shared, stats, f"soak-{tag}-{cycles}")
            cycles += 1
        await asyncio.sleep(0.1)
    if shared.experiment_id:
        await call(conn, stats, "experiment_stop", "POST", f"/reversal/experiments/{shared.experiment_id}/stop", host)
    conn.close()


async def experiment_cycle(conn: Connection, host: str, shared: Shared, stats: Stats, eid: str) -> None:
    """Stop the running experiment (if any), then create and activate the next one."""
    if shared.experiment_id:
        await call(conn, stats, "experiment_stop", "POST", f"/reversal/experiments/{shared.experiment_id}/stop", host)
    spec = {"experiment_id": eid, "name": "soak", "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5}
    await call(conn, stats, "experiment_create", "POST", "/reversal/experiments", host, spec)
    await call(conn, stats, "experiment_activate", "POST", f"/reversal/experiments/{eid}/activate", host)
    shared.experiment_id = eid


async def call(
    conn: Connection, stats: Stats, route: str, method: str, path: str, host: str, body: object = None
) -> None:
    """One admin request (with the token), recorded under route."""
    started = time.perf_counter()
    status, text = await conn.send(encode(method, path, host, body, ADMIN))
    stats.add(route, status, text, started)


async def rss_sampler(pid: int, shared: Shared, samples: list[float], every: float = 5.0) -> None:
    """The server tree's RSS (MB) every `every` seconds until stop_at."""
    while time.monotonic() < shared.stop_at:
        await asyncio.sleep(min(every, max(shared.stop_at - time.monotonic(), 0.0)))
        samples.append(tree_rss_mb(pid))


async def run_phase(port: int, pid: int, seconds: float, concurrency: int, tag: str) -> tuple[Stats, list[float]]:
    """Mixed traffic plus admin changes for `seconds`; the stats and RSS samples (MB) taken meanwhile."""
    host = f"127.0.0.1:{port}"
    traffic = Traffic(host)
    shared = Shared(stop_at=time.monotonic() + seconds)
    stats = Stats()
    rss: list[float] = []
    conns = [Connection("127.0.0.1", port, timeout=30.0) for _ in range(concurrency + 1)]
    tasks = [worker(n, conn, traffic, shared, stats) for n, conn in enumerate(conns[1:])]
    await asyncio.gather(admin(conns[0], host, shared, stats, tag), rss_sampler(pid, shared, rss), *tasks)
    return stats, rss


def report(stats: Stats, seconds: float) -> None:
    """A table per route: requests, statuses, latency percentiles."""
    print("| route | requests | 2xx | 4xx | 5xx | errors | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for route in sorted(stats.statuses):
        c = stats.statuses[route]
        n = sum(c.values())
        p50, p99 = np.percentile(stats.latencies[route], [50, 99]).tolist()
        by = [sum(v for s, v in c.items() if lo <= s < hi) for lo, hi in ((200, 300), (400, 500), (500, 600))]
        print(f"| {route} | {n} | {by[0]} | {by[1]} | {by[2]} | {c.get(0, 0)} | {p50:.1f} | {p99:.1f} |")
    total = stats.count(lambda s: True)
    print(f"total: {total} requests in {seconds:.0f} s ({total / seconds:,.0f} req/s)")
    for sample in stats.samples:
        print(f"  error sample: {sample}")


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL of a fresh schema in the local PostgreSQL, dropped on exit."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    server = os.environ.get("AIFX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    schema = f"aifx_soak_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def serve(port: int, database_url: str) -> tuple[subprocess.Popen, float]:
    """`bentoml serve` with configuration.yaml, an admin token and a fresh state database."""
    os.environ.update(
        {
            "BENTOML_CONFIG": str(ROOT / "configuration.yaml"),
            "AIFX_ADMIN_TOKEN": TOKEN,
            "AIFX_DATABASE_URL": database_url,
            "BENTOML_DO_NOT_TRACK": "True",
        }
    )
    cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    cmd += ["--timeout-keep-alive", "75"]  # above clients' idle expiry (docs/deployment.md)
    return start(cmd, f"http://127.0.0.1:{port}/readyz", timeout=180.0)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m soak.run")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--postgres", action="store_true", help="state in a fresh schema of the local PostgreSQL")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aifx-soak-") as state_dir, ExitStack() as stack:
        url = stack.enter_context(postgres_schema()) if args.postgres else f"sqlite:///{state_dir}/state.db"
        print(f"state database: {'PostgreSQL (fresh schema)' if args.postgres else 'SQLite (fresh file)'}")
        proc, cold = serve(port, url)
        try:
            print(f"service up in {cold:.1f} s; warm-up {args.warmup:.0f} s", flush=True)
            warm, _ = asyncio.run(run_phase(port, proc.pid, args.warmup, args.concurrency, "warmup"))
            rss_start = tree_rss_mb(proc.pid)
            print(f"warm-up: {warm.count(lambda s: True)} requests; RSS after warm-up {rss_start:,.0f} MB", flush=True)
            print(f"soak: {args.seconds:.0f} s at concurrency {args.concurrency}", flush=True)
            stats, samples = asyncio.run(run_phase(port, proc.pid, args.seconds, args.concurrency, "main"))
            rss_end = tree_rss_mb(proc.pid)
        finally:
            stop(proc)
    limit = EXPERIMENT_P99_MS if args.postgres else None
    return verdict(stats, args.seconds, rss_start, samples, rss_end, limit)


def verdict(
    stats: Stats,
    seconds: float,
    rss_start: float,
    samples: list[float],
    rss_end: float,
    experiment_p99_ms: float | None = None,
) -> int:
    """Print the report; 0 when there were no 5xx/errors/unexpected 4xx and RSS grew less than 10 %."""
    report(stats, seconds)
    growth = (rss_end - rss_start) / rss_start
    trail = ", ".join(f"{s:,.0f}" for s in samples)
    print(f"RSS (server process tree): {rss_start:,.0f} MB after warm-up -> {rss_end:,.0f} MB at the end "
          f"({growth:+.1%}); every 5 s: {trail}")  # fmt: skip
    server_errors = stats.count(lambda s: s >= 500)
    other = stats.count(lambda s: s == 0 or 400 <= s < 500)
    failures = []
    if server_errors:
        failures.append(f"{server_errors} responses with a 5xx status")
    if other:
        failures.append(f"{other} transport errors, timeouts or unexpected 4xx")
    if growth >= MAX_RSS_GROWTH:
        failures.append(f"RSS grew {growth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
    if experiment_p99_ms is not None and stats.latencies["predict_user"]:
        p99 = float(np.percentile(stats.latencies["predict_user"], 99))
        print(f"experiment predictions (predict_user) p99 {p99:.1f} ms (limit {experiment_p99_ms:.0f} ms)")
        if p99 > experiment_p99_ms:
            failures.append(f"experiment predictions p99 {p99:.0f} ms > {experiment_p99_ms:.0f} ms")
    print(f"5xx: {server_errors}; errors/unexpected 4xx: {other}; RSS growth {growth:+.1%}")
    print("SOAK PASSED" if not failures else "SOAK FAILED: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
