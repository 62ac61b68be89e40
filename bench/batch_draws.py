"""The batch line's two loads on one server, alternated: items drawn with replacement (the old line) or distinct.

Usage: python -m bench.batch_draws. Shows how much of the old batch line the window cache answered: with
replacement, 10,000 items from the bundled series' 6,097 windows repeat ~5,000 of them.
"""

from __future__ import annotations

import sys
import tempfile

from bench.loadgen import run_load
from bench.payloads import predict_bodies
from bench.run import ROOT, free_port, start, stop


def main() -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"BENTOML_CONFIG": str(ROOT / "configuration.yaml"),
           "AIFX_DATABASE_URL": f"sqlite:///{tempfile.mkdtemp(prefix='aifx-draws-')}/state.db"}  # fmt: skip
    cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    proc, _ = start([*cmd, "--timeout-keep-alive", "75"], f"{base}/readyz", env=env)
    url = f"{base}/reversal/predict/batch"
    try:
        run_load("warm-up", f"{base}/reversal/predict", predict_bodies(300, seed=9), 8)
        for k in range(3):
            drawn = [{"items": predict_bodies(100, seed=100 + i)} for i in range(100)]  # the old line's bodies
            pool = [*predict_bodies(5000, seed=30 + k, distinct=True, price_scale=1.01 + k * 0.001),
                    *predict_bodies(5000, seed=40 + k, distinct=True, price_scale=1.02 + k * 0.001)]  # fmt: skip
            distinct = [{"items": pool[i : i + 100]} for i in range(0, len(pool), 100)]
            for name, bodies in (("with replacement", drawn), ("distinct", distinct)):
                r = run_load(name, url, bodies, 4, timeout=120)
                print(f"round {k + 1}, {name}: {r.requests * 100 / r.seconds:,.0f} predictions/s", flush=True)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
