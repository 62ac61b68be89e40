"""The ceiling: the service's /reversal/predict work (same models, feature and signal code) with nothing around it.

A bare ASGI callable under uvicorn, one process per worker: no BentoML serving, no stage hop, minimal validation.
Run: python -m bench.ceiling --port 8765 [--workers 2] [--version v3.1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any

from aifx import signal as sig
from aifx.serving.errors import ApiError, now_iso
from aifx.serving.inputs import candle_rows, to_candles
from aifx.versions import VersionSpec, model_name
from runners.inference import LiteModel, load_stage_model
from runners.models import stored_model

VERSION_ENV = "AIFX_CEILING_VERSION"  # how the version reaches uvicorn's worker processes
Send = Callable[[dict[str, Any]], Awaitable[None]]


@cache
def models() -> tuple[str, VersionSpec, LiteModel, LiteModel | None]:
    """The version's spec and stage models, loaded from the store on first use as the stage runners load them."""
    version = os.environ.get(VERSION_ENV, "v3.1")
    stored1, stored2 = (stored_model(version, stage) for stage in (1, 2))
    if stored1 is None:
        raise LookupError(f"{model_name(version, 1)} is not in the model store")
    spec, stage1 = load_stage_model(Path(stored1.path), stored1.info.metadata, model_name(version, 1))
    if stored2 is None:  # no Stage 2: the direction rule, as the service applies it
        return version, spec, stage1, None
    return version, spec, stage1, load_stage_model(Path(stored2.path), stored2.info.metadata, model_name(version, 2))[1]


def predict(body: dict[str, Any]) -> dict[str, Any]:
    """The seed's prediction object for one request body (the served version only, no outcome loop)."""
    version, spec, stage1, stage2 = models()
    rows = candle_rows(to_candles(body["data"]), spec)
    p1 = float(stage1(rows[None])[0])
    if not sig.fires(p1, spec.threshold):
        d = sig.hold(p1)
    elif stage2 is not None:
        d = sig.with_stage2(p1, float(stage2(rows[None])[0]))
    else:
        d = sig.by_rule(p1, sig.window_ret_1_sum(rows, spec.features))
    return {"pair": body.get("pair"), "timeframe": body.get("timeframe"), "signal": d.signal,
            "confidence": d.confidence, "stage1_prob": d.stage1_prob, "stage2_prob": d.stage2_prob,
            "model_version": version, "timestamp": now_iso()}  # fmt: skip


async def respond(send: Send, status: int, body: bytes, kind: bytes = b"application/json") -> None:
    """One complete HTTP response."""
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Send) -> None:
    """POST /reversal/predict and GET /health; models load at lifespan start-up (or on the first request)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            try:
                models()
            except Exception as exc:  # noqa: BLE001 - uvicorn reports it and stops
                return await send({"type": "lifespan.startup.failed", "message": repr(exc)})
            gc.freeze()  # as the service does after start-up
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path, method = scope["path"], scope["method"]
    if path == "/health" and method == "GET":
        return await respond(send, 200, b'{"status":"healthy"}')
    if path != "/reversal/predict" or method != "POST":
        return await respond(send, 404, b"not found", b"text/plain")
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    try:
        data = predict(json.loads(b"".join(chunks)))
    except (ValueError, KeyError, TypeError, IndexError, ApiError) as exc:  # bad JSON, fields or candles
        return await respond(send, 400, str(exc).encode(), b"text/plain")
    out = {"success": True, "data": data, "error": None, "timestamp": now_iso()}
    await respond(send, 200, json.dumps(out).encode())


def main() -> None:
    """Serve the ceiling with uvicorn (an import string, so workers > 1 work)."""
    import uvicorn

    ap = argparse.ArgumentParser(prog="python -m bench.ceiling")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--version", default="v3.1")
    args = ap.parse_args()
    os.environ[VERSION_ENV] = args.version
    uvicorn.run("bench.ceiling:app", host="127.0.0.1", port=args.port, workers=args.workers,
                log_level="warning", access_log=False, timeout_keep_alive=75)  # fmt: skip


if __name__ == "__main__":
    main()
