"""CPU per request through the whole service ASGI app in one process: no sockets, no load generator.

Usage: python -m bench.asgi_cpu [--predicts 3000] [--batches 30]. Builds `ReversalEngine.to_asgi()` as a
worker does (BentoML's middlewares, ours, the hot routes) over a fresh SQLite database, sends distinct-bar
predicts and 100-item batches with no token under BentoML's server logging (access lines to /dev/null), and
prints the event loop thread's CPU time per predict and per batch item. Steadier than `make bench` on a shared
machine (thread CPU time, not wall time), so it compares two commits' request paths (run it in each worktree,
interleaved); `make bench` stays the measure of record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging.config
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any, cast

import bentoml

Scope = dict[str, Any]


def _scope(path: str, length: int) -> Scope:
    headers = [(b"host", b"localhost"), (b"content-type", b"application/json"), (b"content-length", b"%d" % length)]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 3000), "state": {}}  # fmt: skip


async def _call(asgi: Any, path: str, body: bytes) -> int:
    """One request; its status."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # the body is in: what follows would be the client leaving
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await asgi(_scope(path, len(body)), receive, send)
    return statuses[0]


async def _timed(asgi: Any, path: str, bodies: list[bytes], warm: int) -> list[float]:
    """Thread CPU seconds of each request after `warm` untimed ones; every answer must be 200."""
    out = []
    for i, body in enumerate(bodies):
        start = time.thread_time()
        status = await _call(asgi, path, body)
        if i >= warm:
            out.append(time.thread_time() - start)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.asgi_cpu")
    ap.add_argument("--predicts", type=int, default=3000)
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("AIFX_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='aifx-cpu-')}/state.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient prefers httpx2, which we do not ship
        from starlette.testclient import TestClient
    # BentoML's server logging as a worker has it (its lines to /dev/null): the access line is part of a request.
    from bentoml._internal.log import SERVER_LOGGING_CONFIG

    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 - the handler binds it now, for good
    logging.config.dictConfig(SERVER_LOGGING_CONFIG)
    sys.stdout = stdout
    # The service first, as a worker imports it: without pandas, so TA-Lib loads without its pandas wrappers
    # (bench.payloads reads the candles with pandas; imported first, every TA-Lib call paid ~1 us more).
    from service import ReversalEngine  # noqa: I001 - before bench.payloads, on purpose

    from bench.payloads import predict_bodies

    warm = 300
    single = [json.dumps(b).encode() for b in predict_bodies(args.predicts + warm, seed=77, distinct=True)]
    batches = [json.dumps({"items": predict_bodies(100, seed=5000 + i)}).encode() for i in range(args.batches + 3)]

    asgi = cast("bentoml.Service[Any]", ReversalEngine).to_asgi()

    async def run() -> tuple[list[float], list[float]]:
        return (await _timed(asgi, "/reversal/predict", single, warm),
                await _timed(asgi, "/reversal/predict/batch", batches, 3))  # fmt: skip

    with TestClient(asgi, base_url="http://localhost") as client:  # runs the lifespan (start-up, shutdown)
        assert client.portal is not None  # set inside the `with`
        predicts, batch = client.portal.call(run)
    for name, values, per in (("predict", predicts, 1), ("batch item", batch, 100)):
        us = sorted(v * 1e6 / per for v in values)
        print(f"{name}: CPU us mean {statistics.mean(us):.0f} median {us[len(us) // 2]:.0f} "
              f"p10 {us[len(us) // 10]:.0f} ({len(us)} requests)")  # fmt: skip


if __name__ == "__main__":
    main()
