"""Where the service's time goes: py-spy samples of every server process during a distinct-bar load.

Usage: python -m bench.profile [--seconds 20] [--env NAME=value ...]. py-spy (pinned in requirements.lock)
is a profiling tool here, never imported by the service; it needs ptrace (root, or CAP_SYS_PTRACE).
Serves `.` as `make serve` does with a fresh SQLite database, sends distinct-bar predicts at concurrency
64 while py-spy samples each entry and stage worker, then prints each process kind's CPU per request
(psutil) and the share of its samples per part of the request path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import psutil

from bench.cpu import KINDS, cpu_by_kind, spent
from bench.loadgen import run_load
from bench.payloads import predict_bodies
from bench.run import ROOT, distinct_bodies, free_port, start, stop

# A sampled stack belongs to the part of its leaf-most frame that matches a pattern (frames of numpy, the
# standard library and the like pass the sample up to their caller's part).
PARTS = (
    ("evaluation log and experiments (SQLAlchemy, SQLite)", ("sqlite3", "sqlalchemy", "outcome_log", "experiments/")),
    ("stage model call (LiteRT, calibration)", ("runners/", "ai_edge_litert", "tflite_runtime", "aifx/calibration.py")),
    ("features (TA-Lib, ratios)", ("aifx/features.py", "talib")),
    ("candles (arrays, OHLC checks)", ("aifx/candles.py", "aifx/serving/inputs.py")),
    ("body decoding and validation", ("aifx/http/body.py", "aifx/serving/fast_body.py", "pydantic", "msgspec")),
    ("BentoML SDK (service wrapper, client, serialization)", ("_bentoml_sdk/", "_bentoml_impl/", "bentoml/")),
    ("metrics (prometheus-client)", ("prometheus_client", "aifx/metrics.py")),
    ("drift windows", ("aifx/drift.py",)),
    ("HTTP server (uvicorn, httptools)", ("uvicorn", "httptools", "h11")),
    ("ASGI framework (Starlette, FastAPI)", ("starlette", "fastapi")),
    ("event loop (asyncio, uvloop)", ("asyncio", "uvloop")),
    ("service code (routes, predictor, responses, middleware)", ("aifx/", "runners/", "service.py")),
)
OTHER = "other (threads outside those, interpreter)"


def classify(stack: str) -> str:
    """The request-path part a sampled stack belongs to."""
    for frame in reversed(stack.split(";")):
        part = next((name for name, keys in PARTS if any(k in frame for k in keys)), None)
        if part is not None:
            return part
    return OTHER


def shares(raw: Path) -> Counter[str]:
    """Samples per part from a py-spy `--format raw` file (collapsed stacks: `frame;frame;... count`)."""
    out: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out[classify(stack)] += int(count)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--route", choices=("predict", "batch"), default="predict",
                    help="distinct-bar predicts at concurrency 64, or batch requests of 100 items at 4")  # fmt: skip
    ap.add_argument("--env", action="append", default=[], help="NAME=value for the server (repeatable)")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    port, work = free_port(), Path(tempfile.mkdtemp(prefix="aifx-profile-"))
    env = {"BENTOML_CONFIG": str(ROOT / "configuration.yaml"), "AIFX_DATABASE_URL": f"sqlite:///{work}/state.db",
           **dict(e.split("=", 1) for e in args.env)}  # fmt: skip
    cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    proc, _ = start([*cmd, "--timeout-keep-alive", "75"], f"http://127.0.0.1:{port}/readyz", env=env)
    try:
        url = f"http://127.0.0.1:{port}/reversal/predict"
        run_load("warm-up", url, distinct_bodies(300, 8), 8)
        bodies: list = distinct_bodies(6_000, 3) + distinct_bodies(6_000, 4)  # two pairs: 12,000 distinct bars
        concurrency, per_body = 64, 1
        if args.route == "batch":
            url, concurrency, per_body = f"{url}/batch", 4, 100
            unique = [{"items": predict_bodies(per_body, seed=100 + i)} for i in range(200)]
            bodies = unique * 3  # longer than the sampling at ~2,000 predictions/s
        workers = {p.pid: k for p in psutil.Process(proc.pid).children(recursive=True)
                   if (k := next((k for n, k in KINDS.items() if n in " ".join(p.cmdline())), None))}  # fmt: skip
        spies = [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "250",
                                   "--nonblocking", "--format", "raw", "--output", str(work / f"{kind}-{pid}.txt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid, kind in workers.items()]  # fmt: skip
        result: list = []
        load = threading.Thread(target=lambda: result.append(run_load(args.route, url, bodies, concurrency)))
        before = cpu_by_kind(proc.pid)
        load.start()
        for s in spies:
            s.wait()
        after = cpu_by_kind(proc.pid)
        load.join()
    finally:
        stop(proc)
    run = result[0]
    print(run.row())
    predictions = run.rps * per_body * args.seconds  # answered while py-spy and the CPU counters ran (approximate)
    per = {k: round(v / predictions * 1000, 3) for k, v in spent(before, after).items() if k != "other"}
    print(f"CPU ms per prediction while sampled (~{predictions:.0f} predictions): {per}")
    for kind in ("entry", "stage1", "stage2"):
        total: Counter[str] = Counter()
        for raw in work.glob(f"{kind}-*.txt"):
            total += shares(raw)
        n = sum(total.values()) or 1
        print(f"\n{kind}: {n} samples")
        for part, count in total.most_common():
            print(f"  {count / n:6.1%}  {part}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
