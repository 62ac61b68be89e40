"""Benchmark: the Bento service vs the seed-style baseline, in one run.

Usage: python -m bench.run [--quick]   (make bench). Needs the models in the BentoML store (make models).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench import signals
from bench.loadgen import HEADER, RunResult, run_load
from bench.payloads import predict_bodies

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    cmd: list[str], ready_url: str, timeout: float = 120.0, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, float]:
    """Start a server in its own process group; return it and the seconds until ready_url answers 200."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:3]} exited with {proc.returncode}")
        try:
            if httpx.get(ready_url, timeout=1.0).status_code == 200:
                return proc, time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{ready_url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def machine() -> dict[str, object]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "os": platform.platform()}  # fmt: skip


def bench_service(
    scale: float, config: Path, extra_env: dict[str, str]
) -> tuple[list[RunResult], dict[str, float], dict[str, object]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    state = tempfile.mkdtemp(prefix="aifx-bench-")  # a fresh database: no bar is known before the run
    proc, cold = start([sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1",
                        "--timeout-keep-alive", "75"],
                       f"{base}/readyz", env={"BENTOML_CONFIG": str(config), **extra_env,
                                              "AIFX_DATABASE_URL": f"sqlite:///{state}/state.db"})  # fmt: skip
    try:
        url = f"{base}/reversal/predict"
        first = first_prediction_s(url, t0)
        run_load("warm-up", url, predict_bodies(int(300 * scale), seed=9), 8)
        runs: list[RunResult] = []
        # c=64 is the ratio line: 12,000 requests (~3 s on the ceiling), not 4,000 (~0.7 s, too short to be steady)
        for conc, n in ((1, 1000), (8, 2000), (32, 4000), (64, C64_REQUESTS), (1, 1000)):
            label = "service" if not runs or conc != 1 else "service (after burst)"
            runs.append(run_load(label, url, distinct_bodies(int(n * scale), len(runs)), conc))
            print(runs[-1].row(), flush=True)
        native = f"{base}/v1/predict"  # the BentoML-native API: same body, same prediction code
        run_load("warm-up", native, predict_bodies(int(100 * scale), seed=8), 8)
        for conc, n in ((64, 4000), (1, 1000)):
            runs.append(run_load("native /v1/predict", native, distinct_bodies(int(n * scale), len(runs)), conc))
            print(runs[-1].row(), flush=True)
        # Beside the distinct-bar line, never instead of it: many users asking about the same bars.
        repeated = repeated_bodies(int(4000 * scale), len(runs), REPEATED_BARS)
        runs.append(run_load(f"service, repeated bars ({REPEATED_BARS} bars)", url, repeated, 64))
        print(runs[-1].row(), flush=True)
        rss = tree_rss_mb(proc.pid)
        batch = bench_batch(f"{base}/reversal/predict/batch", scale)
        for line in (signals.publish_latency, signals.predict_without_data):  # issue 30's lines
            runs.append(line(base, scale))
            print(runs[-1].row(), flush=True)
    finally:
        stop(proc)
    return runs, {"cold_start_s": round(cold, 2), "first_prediction_s": round(first, 2), "rss_mb": round(rss, 1)}, batch


REPEATED_BARS = 100  # the repeated-bar line: 4,000 requests about 100 bars, 40 users per bar
C64_REQUESTS = 12_000  # the service's and the ceiling's c=64 runs (distinct bars, the same bodies)
DISTINCT_BARS = 6_000  # windows of 64 candles the bundled series holds (6,097), rounded down
PAIRS = ("EUR/USD", "GBP/USD", "AUD/USD", "NZD/USD", "USD/CAD", "EUR/GBP", "EUR/CHF", "AUD/NZD", "GBP/CHF")


def distinct_bodies(count: int, run: int) -> list[dict[str, object]]:
    """Every request about a different bar: distinct bars within a run, a pair and prices of its own per run.

    So the outcome loop scores every loaded version on every request (no bar is scored twice), and the window
    cache, keyed by the candles' content (not the pair), holds no window of an earlier run: the bundled data
    is one series, so each run's prices are scaled by its own factor (1.0001, 1.0002, ...).
    """
    bodies: list[dict[str, object]] = []
    for part in range(-(-count // DISTINCT_BARS)):  # beyond the series' bars: more parts, each at a scale of its own
        take, tag = min(DISTINCT_BARS, count - len(bodies)), run + 100 * part
        bodies += predict_bodies(
            take, seed=tag, pair=PAIRS[run % len(PAIRS)], distinct=True, price_scale=run_scale(tag)
        )
    return bodies


def run_scale(run: int) -> float:
    """A run's price factor: no two runs (and no warm-up, at 1.0) send a window of the same content."""
    return 1.0 + (run + 1) * 1e-4


def repeated_bodies(count: int, run: int, bars: int) -> list[dict[str, object]]:
    """`count` requests about only `bars` different bars (a pair of the run's own), in random order."""
    distinct = distinct_bodies(bars, run)
    order = np.random.default_rng(run).permutation(count) % bars
    return [distinct[i] for i in order.tolist()]


def native_vs_rest(runs: list[RunResult]) -> dict[str, float]:
    """The native predict API over the REST route: c=64 throughput, c=1 p50 (both after the c=64 burst)."""
    rest64 = next(r for r in runs if r.label == "service" and r.concurrency == 64)
    rest1 = next(r for r in runs if r.label == "service (after burst)")
    nat64, nat1 = (next(r for r in runs if r.label.startswith("native") and r.concurrency == c) for c in (64, 1))
    return {"rps_c64": round(nat64.rps / rest64.rps, 3), "p50_c1": round(nat1.p50 / rest1.p50, 3)}


def first_prediction_s(url: str, t0: float, timeout: float = 120.0) -> float:
    """Seconds from process start until a predict answers 200 (the stages may load after /readyz)."""
    body = predict_bodies(1, seed=3)[0]
    while time.monotonic() - t0 < timeout:
        try:
            if httpx.post(url, json=body, timeout=5.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no successful prediction within {timeout}s")


def bench_batch(url: str, scale: float, items: int = 100) -> dict[str, object]:
    """Predictions per second through the batch route (requests of `items` predict items, the limit)."""
    count = max(int(100 * scale), 4)
    # Distinct windows, none of them seen by the other runs: two runs' scales of at most 5,000 bars each.
    half = count * items // 2
    pool = [*distinct_bodies(half, 20), *distinct_bodies(count * items - half, 21)]
    bodies = [{"items": pool[i : i + items]} for i in range(0, len(pool), items)]
    result = run_load("batch", url, bodies, 4, timeout=120)
    preds = result.requests * items
    return {"requests": result.requests, "items_per_request": items, "errors": result.errors,
            "predictions_per_s": round(preds / result.seconds, 1), "p50_ms": round(result.p50, 1)}  # fmt: skip


def bench_ceiling(scale: float, version: str = "v3.1") -> tuple[list[RunResult], dict[str, float]]:
    """The service's distinct-bar load (same bodies) on bench/ceiling.py: its predict work, nothing around it."""
    port = free_port()
    proc, cold = start([sys.executable, "-m", "bench.ceiling", "--port", str(port), "--workers", "2",
                        "--version", version], f"http://127.0.0.1:{port}/health")  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/reversal/predict"
        run_load("warm-up", url, predict_bodies(int(300 * scale), seed=9), 8)
        runs = []
        for conc, n, run in ((64, C64_REQUESTS, 3), (1, 1000, 0)):  # `run`: the service run whose bodies it gets
            runs.append(run_load("ceiling (1 process per worker)", url, distinct_bodies(int(n * scale), run), conc))
            print(runs[-1].row(), flush=True)
        rss = tree_rss_mb(proc.pid)
    finally:
        stop(proc)
    return runs, {"cold_start_s": round(cold, 2), "rss_mb": round(rss, 1)}


def ratio_to_ceiling(runs: list[RunResult], ceiling_runs: list[RunResult]) -> dict[str, float | None]:
    """The service over the ceiling: c=64 throughput, c=1 p50 (the first c=1 run, not after the burst)."""
    svc64, svc1 = (next(r for r in runs if r.label == "service" and r.concurrency == c) for c in (64, 1))
    ceil64, ceil1 = (next(r for r in ceiling_runs if r.concurrency == c) for c in (64, 1))
    return {"rps_c64": round(svc64.rps / ceil64.rps, 3) if ceil64.rps else None,
            "p50_c1": round(svc1.p50 / ceil1.p50, 3) if ceil1.p50 else None}  # fmt: skip


def bench_baseline(scale: float) -> tuple[list[RunResult], dict[str, float]]:
    port = free_port()
    proc, cold = start([sys.executable, "-m", "bench.baseline.server", "--port", str(port)],
                       f"http://127.0.0.1:{port}/health")  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/reversal/predict"
        run_load("warm-up", url, predict_bodies(50, seed=9), 4)
        runs = [run_load("baseline (seed style)", url, predict_bodies(int(n * scale), seed=c), c)
                for c, n in ((1, 100), (32, 400))]  # fmt: skip
        for r in runs:
            print(r.row(), flush=True)
        rss = tree_rss_mb(proc.pid)
    finally:
        stop(proc)
    return runs, {"cold_start_s": round(cold, 2), "rss_mb": round(rss, 1)}


def repeated_vs_distinct(runs: list[RunResult]) -> float | None:
    """What reuse buys: c=64 throughput with many users per bar over the distinct-bar line's."""
    distinct = next(r for r in runs if r.label == "service" and r.concurrency == 64)
    repeated = next((r for r in runs if r.label.startswith("service, repeated")), None)
    return round(repeated.rps / distinct.rps, 3) if repeated and distinct.rps else None


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--quick", action="store_true", help="a tenth of the requests (smoke run)")
    ap.add_argument("--config", type=Path, default=ROOT / "configuration.yaml", help="BENTOML_CONFIG for the service")
    ap.add_argument("--env", action="append", default=[], help="NAME=value for the service (repeatable), e.g. "
                    "AIFX_VERSIONS=v3.2,v3.1,v3.0")  # fmt: skip
    args = ap.parse_args()
    extra_env = dict(e.split("=", 1) for e in args.env)
    scale = 0.1 if args.quick else 1.0
    shadow = f"AIFX_SHADOW_VERSIONS={extra_env['AIFX_SHADOW_VERSIONS']}" if "AIFX_SHADOW_VERSIONS" in extra_env else (
        "every other loaded version scored beside the served one (AIFX_SHADOW_VERSIONS unset)")  # fmt: skip
    print(f"service runs: every request about a different bar (a pair per run), the outcome loop on: {shadow}; "
          f"server environment: {extra_env or 'defaults'}", flush=True)  # fmt: skip
    print(HEADER, flush=True)
    runs, svc, batch = bench_service(scale, args.config.resolve(), extra_env)
    served = extra_env.get("AIFX_VERSIONS", os.environ.get("AIFX_VERSIONS", "v3.1")).split(",")[0].strip()
    ceil_runs, ceiling = bench_ceiling(scale, served)
    base_runs, base = bench_baseline(scale)
    ratio = ratio_to_ceiling(runs, ceil_runs)
    c32 = next(r for r in runs if r.concurrency == 32)
    b32 = next(r for r in base_runs if r.concurrency == 32)
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "config": str(args.config),
        "env": extra_env,
        "machine": machine(),
        "service": {**svc, "runs": [r.__dict__ | {"rps": round(r.rps, 1)} for r in runs], "batch": batch},
        "baseline": {**base, "runs": [r.__dict__ | {"rps": round(r.rps, 1)} for r in base_runs]},
        "throughput_ratio_c32": round(c32.rps / b32.rps, 1) if b32.rps else None,
        "native_vs_rest": native_vs_rest(runs),
        "ceiling": {**ceiling, "version": served, "runs": [r.__dict__ | {"rps": round(r.rps, 1)} for r in ceil_runs]},
        "ratio_to_ceiling": ratio,
        "repeated_vs_distinct_c64": repeated_vs_distinct(runs),
    }
    print(f"\nbatch route: {batch}")
    print(f"service: cold start {svc['cold_start_s']} s to /readyz, {svc['first_prediction_s']} s to the first "
          f"prediction, RSS {svc['rss_mb']} MB; "
          f"baseline: cold start {base['cold_start_s']} s, RSS {base['rss_mb']} MB")  # fmt: skip
    print(f"throughput ratio at concurrency 32: {summary['throughput_ratio_c32']}x")
    print(f"native API vs REST route: {summary['native_vs_rest']}")
    print(f"ratio to the ceiling: c=64 throughput {_num(ratio['rps_c64'])} of the ceiling's, "
          f"c=1 p50 {_num(ratio['p50_c1'])} times the ceiling's")  # fmt: skip
    print(f"repeated bars vs distinct bars, c=64 throughput: {summary['repeated_vs_distinct_c64']}x")
    print(f"machine: {summary['machine']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps(summary, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
