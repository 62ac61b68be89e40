"""CPU time per request of the server's processes (the service's workers and their other threads), from psutil.

Usage: python -m bench.cpu [--env AIFX_OUTCOMES=false ...] [--floor]. Serves `.` as `make serve` does with a
fresh SQLite database, sends 4,000 distinct-bar predicts at concurrency 64 and the batch route; with
--floor also 4,000 bodies that validation refuses (422), the cost of the HTTP stack alone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import psutil

from bench.loadgen import run_load
from bench.run import ROOT, bench_batch, distinct_bodies, free_port, start, stop

KINDS = {"ReversalEngine": "entry"}  # the one service: stage models run in its workers


def cpu_by_kind(pid: int) -> dict[int, tuple[str, float]]:
    """pid -> (kind, user + system seconds) of the server's process tree."""
    out = {}
    for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        cmd = " ".join(p.cmdline())
        kind = next((k for name, k in KINDS.items() if name in cmd), "other")
        t = p.cpu_times()
        out[p.pid] = (kind, t.user + t.system)
        if kind == "entry":  # the event loop's thread apart from the others (write-behind, state reads)
            threads = sum(x.user_time + x.system_time for x in p.threads() if x.id != p.pid)
            out[-p.pid] = ("entry_other_threads", threads)
    return out


def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for pid, (kind, seconds) in after.items():
        total[kind] = total.get(kind, 0.0) + seconds - before.get(pid, (kind, 0.0))[1]
    return total


def floor(base: str, pid: int) -> None:
    """The HTTP stack's own cost: 4,000 bodies that fail validation (422) at concurrency 64 and 1."""
    for concurrency in (64, 1):
        before = cpu_by_kind(pid)
        result = run_load(f"422 c={concurrency}", f"{base}/reversal/predict", [{"pair": "EUR/USD"}] * 4000, concurrency)
        per = {k: round(v / result.requests * 1000, 3) for k, v in spent(before, cpu_by_kind(pid)).items()}
        print(f"{result.row()} CPU ms per request: {per}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cpu")
    ap.add_argument("--env", action="append", default=[], help="NAME=value for the server (repeatable)")
    ap.add_argument("--floor", action="store_true", help="then the floor: requests refused by validation (422)")
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"BENTOML_CONFIG": str(ROOT / "configuration.yaml"),
           "AIFX_DATABASE_URL": f"sqlite:///{tempfile.mkdtemp(prefix='aifx-cpu-')}/state.db",
           **dict(e.split("=", 1) for e in args.env)}  # fmt: skip
    cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    proc, _ = start([*cmd, "--timeout-keep-alive", "75"], f"{base}/readyz", env=env)
    try:
        run_load("warm-up", f"{base}/reversal/predict", distinct_bodies(300, 8), 8)
        before = cpu_by_kind(proc.pid)
        result = run_load("c=64", f"{base}/reversal/predict", distinct_bodies(4000, 3), 64)
        per = {k: round(v / result.requests * 1000, 3) for k, v in spent(before, cpu_by_kind(proc.pid)).items()}
        print(f"{result.row()} CPU ms per request: {per}")
        before = cpu_by_kind(proc.pid)
        batch = bench_batch(f"{base}/reversal/predict/batch", 1.0)
        n = int(str(batch["requests"])) * int(str(batch["items_per_request"]))
        per = {k: round(v / n * 1e6, 1) for k, v in spent(before, cpu_by_kind(proc.pid)).items()}
        print(f"batch {batch['predictions_per_s']} predictions/s; CPU µs per prediction: {per}")
        if args.floor:
            floor(base, proc.pid)
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
