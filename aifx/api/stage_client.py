"""The one client of a stage service: proxy lookup, wire format, coalescing, bounded retries and timeouts.

Inference is idempotent, so a call that fails in transit (connection reset, server
disconnected, a worker restarting, a 503 from an overloaded batcher) is retried a few
times with backoff (cf. bentoml/BentoML#3669, #4971). Every attempt has a timeout, so a
stage that stays down gives a 503 with a message, never a hang.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import anyio
import httpx
from bentoml.exceptions import ServiceUnavailable

from aifx import metrics
from aifx.api.context import get_logger
from aifx.api.errors import StageUnavailable, error_id, with_error_id
from aifx.settings import Settings
from aifx.wire import Window, group_windows, ungroup

logger = get_logger("bentoml.aifx.stages")
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
StatusFn = Callable[..., Awaitable[dict[str, Any]]]
LOAD_TIMEOUT = 30.0  # a status call that names versions to load waits for the stage worker to load them


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

    @property
    def idle(self) -> bool:
        """No call in flight and none queued: a call made now goes out at once."""
        return not self._inflight and not self._queue

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


class StageClient:
    """Scores windows on one stage service: coalesced, with per-attempt timeouts and bounded retries."""

    def __init__(
        self,
        stage: str,
        service: str,
        call: StageFn,
        attempts: int,
        timeout: float,
        backoff: float,
        max_inflight: int = 2,
        status: StatusFn | None = None,
    ) -> None:
        self.stage = stage
        self.service = service
        self._call = call
        self._status = status
        self.attempts = attempts
        self.timeout = timeout
        self.backoff = backoff
        self._coalesce = Coalescer(self._with_retries, max_inflight=max_inflight)
        # One caller's whole wait (queued behind in-flight calls, then its own attempts) is bounded too;
        # the slack lets a call's own retries report their last error first.
        self.deadline = attempts * timeout + sum(backoff * 2**i for i in range(attempts - 1)) + timeout / 4

    @classmethod
    def of(cls, stage: str, service: str, dependency: Any, api: str, settings: Settings) -> StageClient:
        """The client of a `bentoml.depends` stage (a remote proxy when served, an instance in-process)."""
        return cls(
            stage,
            service,
            _scorer(dependency, api),
            settings.stage_attempts,
            settings.stage_timeout_seconds,
            settings.stage_backoff_seconds,
            status=_api(dependency, "status"),
        )

    @property
    def idle(self) -> bool:
        """No stage call in flight or queued in this worker."""
        return self._coalesce.idle

    async def __call__(self, windows: Sequence[Any]) -> list[float]:
        """One probability per window, in order."""
        try:
            with anyio.fail_after(self.deadline):
                return await self._coalesce(windows)
        except TimeoutError:
            metrics.STAGE_FAILURES.labels(stage=self.stage).inc()
            raise StageUnavailable(
                f"{self.stage} ({self.service}) is unavailable: no answer within {self.deadline:g} s; retry later"
            ) from None

    async def status(self, load: Sequence[str] = ()) -> dict[str, Any] | None:
        """The stage service's load report, or None when it does not answer in time.

        `load`: versions imported since the start; the stage worker that answers loads those it lacks first.
        """
        if self._status is None:
            return None
        try:
            with anyio.fail_after(max(self.timeout, LOAD_TIMEOUT) if load else self.timeout):
                return dict(await (self._status(versions=list(load)) if load else self._status()))
        except Exception as exc:  # noqa: BLE001 - an unreachable stage is reported, not raised
            logger.warning("%s status unavailable: %s", self.service, _describe(exc))
            return None

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
                logger.warning(
                    "%s call failed (attempt %d/%d) [requests %s]: %r",
                    self.service,
                    attempt + 1,
                    self.attempts,
                    _ids(windows),
                    exc,
                )
                continue
            except Exception as exc:
                metrics.STAGE_FAILURES.labels(stage=self.stage).inc()
                eid = error_id()  # the exception text stays in the log (it can name files, hosts, models)
                logger.exception("error %s: %s call failed [requests %s]", eid, self.service, _ids(windows))
                message = f"{self.stage} ({self.service}) failed; retry later"
                raise StageUnavailable(with_error_id(message, eid)) from exc
            if len(out) != len(windows):
                raise StageUnavailable(f"{self.stage} ({self.service}) answered {len(out)} of {len(windows)}")
            return [float(p) for p in out]
        metrics.STAGE_FAILURES.labels(stage=self.stage).inc()
        eid = error_id()
        logger.warning(
            "error %s: %s unavailable after %d attempts [requests %s]; last error: %s",
            eid,
            self.service,
            self.attempts,
            _ids(windows),
            _describe(last),
        )
        raise StageUnavailable(
            with_error_id(
                f"{self.stage} ({self.service}) is unavailable: no answer after {self.attempts} attempts "
                f"({self.timeout:g} s timeout each; last attempt {_kind(last)}); retry later",
                eid,
            )
        )


def _kind(exc: BaseException | None) -> str:
    """What went wrong in words a client may see (no exception text)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ServiceUnavailable):
        return "was refused: the stage is overloaded"
    return "failed in transit (connection or transfer error)"


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "none"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _api(dependency: Any, name: str) -> Callable[..., Awaitable[Any]]:
    """An async call of a stage API, looked up per call (remote clients are set up after __init__)."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return await getattr(dependency.to_async, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _scorer(dependency: Any, name: str) -> StageFn:
    """A stage's scoring API over windows: one stacked array per version travels, not one object per window."""
    api = _api(dependency, name)

    async def score(windows: list[Window]) -> list[float]:
        batches, order = group_windows(windows)
        probs = await api(batches)
        if len(probs) != len(order):  # the caller reports the count mismatch
            return list(probs)
        return ungroup(probs, order)

    return score


def _ids(windows: Sequence[Any]) -> str:
    """The request ids of the windows of one stage call (bounded), for log lines."""
    ids = list(dict.fromkeys(w[2] for w in windows if isinstance(w, tuple) and len(w) > 2 and w[2]))
    return ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "") if ids else "unknown"
