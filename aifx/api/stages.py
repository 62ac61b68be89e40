"""Calls from the entry service to the stage services: bounded retries and timeouts.

Inference is idempotent, so a call that fails in transit (connection reset, server
disconnected, a worker restarting, a 503 from an overloaded batcher) is retried a few
times with backoff (cf. bentoml/BentoML#3669, #4971). Every attempt has a timeout, so a
stage that stays down gives a 503 with a message, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import anyio
import httpx
import numpy as np
from bentoml.exceptions import ServiceUnavailable

from aifx import metrics
from aifx.api.errors import StageUnavailable
from aifx.api.schemas import StageBatch

logger = logging.getLogger("bentoml.aifx.stages")
# BentoML's RemoteProxy speaks aiohttp (ServerDisconnectedError, ClientOSError, ...); httpx for
# other clients; ServiceUnavailable is a 503 from a stage whose batcher shed load.
TRANSIENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    httpx.TransportError,
    TimeoutError,
    ServiceUnavailable,
)

StageFn = Callable[[list[Any]], Awaitable[list[float]]]
Window = tuple[str, np.ndarray]  # (version, unscaled window x features rows)


def group_windows(windows: Sequence[Window]) -> tuple[list[StageBatch], list[int]]:
    """One stacked batch per version (first-seen order) and each output position's window index."""
    by_version: dict[str, list[int]] = {}
    for i, (version, _) in enumerate(windows):
        by_version.setdefault(version, []).append(i)
    batches = [StageBatch(version=v, rows=np.stack([windows[i][1] for i in idx])) for v, idx in by_version.items()]
    return batches, [i for idx in by_version.values() for i in idx]


def ungroup(probs: Sequence[float], order: Sequence[int]) -> list[float]:
    """Probabilities back in window order (inverse of group_windows' order)."""
    out = [0.0] * len(order)
    for p, i in zip(probs, order, strict=True):
        out[i] = p
    return out


class Coalescer:
    """Merges concurrent calls into one stage request while earlier requests are in flight.

    Nothing waits at low load (a call goes out at once when a slot is free); under load the
    windows that queue up behind the in-flight requests travel together, so one HTTP hop
    serves many predictions.
    """

    def __init__(self, call: StageFn, max_inflight: int = 2, max_items: int = 256) -> None:
        self._call = call
        self.max_inflight = max_inflight
        self.max_items = max_items
        self._queue: list[tuple[list[Any], asyncio.Future[list[float]]]] = []
        self._inflight = 0

    async def __call__(self, windows: Sequence[Any]) -> list[float]:
        future: asyncio.Future[list[float]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(windows), future))
        if self._inflight < self.max_inflight:
            self._launch()
        return await future

    def _launch(self) -> None:
        batch: list[tuple[list[Any], asyncio.Future[list[float]]]] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0][0]) <= self.max_items):
            item = self._queue.pop(0)
            if item[1].done():  # the caller went away
                continue
            batch.append(item)
            size += len(item[0])
        if not batch:
            return
        self._inflight += 1
        asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[list[float]]]]) -> None:
        try:
            out = await self._call([w for windows, _ in batch for w in windows])
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            start = 0
            for windows, future in batch:
                if not future.done():
                    future.set_result(out[start : start + len(windows)])
                start += len(windows)
        finally:
            self._inflight -= 1
            while self._queue and self._inflight < self.max_inflight:
                self._launch()


class StageCaller:
    """Calls one stage API with per-attempt timeouts and bounded retries on transient failures."""

    def __init__(
        self,
        stage: str,
        service: str,
        call: StageFn,
        attempts: int,
        timeout: float,
        backoff: float,
        max_inflight: int = 2,
    ) -> None:
        self.stage = stage
        self.service = service
        self._call = call
        self.attempts = attempts
        self.timeout = timeout
        self.backoff = backoff
        self._coalesce = Coalescer(self._with_retries, max_inflight=max_inflight)
        # One caller's whole wait (queued behind in-flight calls, then its own attempts) is bounded too;
        # the slack lets a call's own retries report their last error first.
        self.deadline = attempts * timeout + sum(backoff * 2**i for i in range(attempts - 1)) + timeout / 4

    async def __call__(self, windows: Sequence[Any]) -> list[float]:
        try:
            with anyio.fail_after(self.deadline):
                return await self._coalesce(windows)
        except TimeoutError:
            metrics.STAGE_FAILURES.labels(stage=self.stage).inc()
            raise StageUnavailable(
                f"{self.stage} ({self.service}) is unavailable: no answer within {self.deadline:g} s; retry later"
            ) from None

    async def _with_retries(self, windows: list[Any]) -> list[float]:
        last: BaseException | None = None
        for attempt in range(self.attempts):
            if attempt:
                metrics.STAGE_RETRIES.labels(stage=self.stage).inc()
                await anyio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                with anyio.fail_after(self.timeout):
                    out = await self._call(windows)
            except TRANSIENT as exc:
                last = exc
                logger.warning("%s call failed (attempt %d/%d): %r", self.service, attempt + 1, self.attempts, exc)
                continue
            except Exception as exc:
                metrics.STAGE_FAILURES.labels(stage=self.stage).inc()
                logger.exception("%s call failed", self.service)
                raise StageUnavailable(f"{self.stage} ({self.service}) failed: {_describe(exc)}") from exc
            if len(out) != len(windows):
                raise StageUnavailable(f"{self.stage} ({self.service}) answered {len(out)} of {len(windows)}")
            return [float(p) for p in out]
        metrics.STAGE_FAILURES.labels(stage=self.stage).inc()
        raise StageUnavailable(
            f"{self.stage} ({self.service}) is unavailable: no answer after {self.attempts} attempts "
            f"({self.timeout:g} s timeout each); last error: {_describe(last)}; retry later"
        )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "none"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


async def fetch_status(name: str, call: Callable[[], Awaitable[dict[str, Any]]], timeout: float) -> dict | None:
    """A stage service's load report, or None if it does not answer in time."""
    try:
        with anyio.fail_after(timeout):
            return dict(await call())
    except Exception as exc:  # noqa: BLE001 - an unreachable stage is reported, not raised
        logger.warning("%s status unavailable: %s", name, _describe(exc))
        return None
