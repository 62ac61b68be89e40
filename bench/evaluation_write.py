"""In-process cost of one evaluation-log write (experiments/evaluation.py EvaluationStore.log), no server.

Usage: python -m bench.evaluation_write [--url sqlite:///...] [--profile]. Writes batches of 100 bars, each
with two decisions (a served and a shadow version), as the write-behind queue does, into a fresh database
(SQLite file by default; a PostgreSQL URL works too) and prints the time per bar.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from datetime import UTC, datetime, timedelta

from experiments import ExperimentStore
from experiments.evaluation import EvaluationStore
from experiments.records import BarLog, Decision

BARS = 100
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def batch(k: int) -> list[BarLog]:
    """The k-th batch: BARS new hourly EUR/USD bars, each with a served v3.1 and a shadow v3.0 decision."""
    decisions = (Decision("v3.1", "long", 0.6, 0.7, 1), Decision("v3.0", "hold", 0.1, None, 0))
    return [
        BarLog("EUR/USD", "1h", T0 + timedelta(hours=k * BARS + i), 1.1, 0.001, 0.0001, decisions) for i in range(BARS)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.evaluation_write")
    ap.add_argument("--url", default=f"sqlite:///{tempfile.mkdtemp(prefix='aifx-evw-')}/state.db")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--profile", action="store_true", help="cProfile of 20 more batches, by own time")
    args = ap.parse_args()
    store = EvaluationStore(ExperimentStore(args.url))
    store.log(batch(0))  # schema and connection set up before the clock starts
    started = time.perf_counter()
    for k in range(1, args.batches + 1):
        store.log(batch(k))
    per_bar = (time.perf_counter() - started) / (args.batches * BARS)
    print(f"{per_bar * 1e6:.1f} µs per bar (1 bar + 2 decisions), batches of {BARS}, {args.url.split(':')[0]}")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(lambda: [store.log(batch(k)) for k in range(args.batches + 1, args.batches + 21)])
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
