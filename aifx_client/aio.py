"""AsyncAIFXClient: the asyncio client (httpx.AsyncClient); client.py is generated from this file by unasync."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from aifx_client import calls, protocol, sse
from aifx_client.calls import Call
from aifx_client.config import USER_AGENT, ClientConfig, RetryPolicy
from aifx_client.errors import AIFXError, MLDisabled
from aifx_client.models import (
    BatchItem,
    CandlesResult,
    Comparison,
    Experiment,
    ExperimentMetrics,
    Health,
    ModelInfo,
    ModelsInfo,
    Outcome,
    Prediction,
    PredictRequest,
    SignalEvent,
    SwitchResult,
)
from aifx_client.sse import Reconnect
from aifx_client.stats import ClientStats

T = TypeVar("T")
logger = logging.getLogger("aifx_client")


class _AsyncPlumbing:
    """Calls with retries and fallback, and followed streams, over the client's connection pool."""

    config: ClientConfig
    stats: ClientStats
    _http: httpx.AsyncClient

    async def _legacy(self, req: PredictRequest, primary: AIFXError) -> Prediction:
        logger.warning("%s failed (%s); falling back to %s", self.config.predict_path, primary, self.config.legacy_path)
        self.stats.count("fallbacks")
        call = calls.legacy_predict(req, self.config.legacy_path)
        try:
            answer, url = await self._send(call)
            legacy = protocol.parse(call, answer, url)
        except AIFXError as exc:
            raise exc from primary
        return protocol.legacy_to_prediction(legacy, req, answer.timestamp, url)

    async def _run(self, call: Call[T]) -> T:
        answer, url = await self._send(call)
        return protocol.parse(call, answer, url)

    async def _send(self, call: Call[Any]) -> tuple[protocol.Answer, str]:
        if not self.config.enabled:
            raise MLDisabled()
        try:
            return await self._attempts(call)
        except AIFXError:
            self.stats.count("failures")
            raise

    async def _attempts(self, call: Call[Any]) -> tuple[protocol.Answer, str]:
        url, policy = self.config.base_url + call.path, self.config.retry
        for attempt in range(1, policy.attempts + 1):
            response, exc = None, None
            self.stats.count("requests")
            try:
                auth = protocol.headers(call, self.config.admin_token, self.config.outcome_token)
                response = await self._http.request(call.method, call.path, json=call.body, headers=auth)
            except httpx.TransportError as err:
                exc = err
            step = protocol.judge(call, url, self.config.timeout, attempt, response, exc)
            if step.answer is not None:
                return step.answer, url
            assert step.error is not None
            if not step.retry or attempt == policy.attempts:
                raise step.error
            self.stats.count("retries")
            await asyncio.sleep(protocol.backoff(policy, attempt, response, call, step.error))
        raise AssertionError("unreachable: the loop returns or raises")

    async def _follow(
        self, pair: str, timeframe: str, last_event_id: int | None, policy: Reconnect
    ) -> AsyncGenerator[SignalEvent, None]:
        if not self.config.enabled:
            raise MLDisabled()
        follow = sse.Follow(self.config.base_url + sse.STREAM_PATH, last_event_id, policy)
        params = {"pair": pair, "timeframe": timeframe}
        while True:
            try:
                self.stats.count("requests")
                stream = self._http.stream(
                    "GET",
                    sse.STREAM_PATH,
                    params=params,
                    headers=follow.headers(),
                    timeout=follow.timeout(self.config.timeout),
                )
                async with stream as response:
                    if response.status_code != 200:
                        await response.aread()  # the error's message
                    if follow.opened(response):
                        async for line in response.aiter_lines():
                            event = follow.feed(line)
                            if event is not None:
                                yield event
                        follow.ended()
            except httpx.TransportError as exc:
                follow.dropped(exc)
            self.stats.count("reconnects")
            await asyncio.sleep(follow.delay())


class AsyncAIFXClient(_AsyncPlumbing):
    """Asyncio client of the AIFX Reversal Engine; arguments left as None come from ML_API_*.

    Raises MLDisabled on every call when ML_API_ENABLED=false (no request is sent).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        enabled: bool | None = None,
        timeout: float | None = None,
        admin_token: str | None = None,
        outcome_token: str | None = None,
        retry: RetryPolicy | None = None,
        predict_path: str | None = None,
        legacy_path: str | None = None,
        fallback: bool | None = None,
        config: ClientConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(
            config,
            base_url=base_url,
            enabled=enabled,
            timeout=timeout,
            admin_token=admin_token,
            outcome_token=outcome_token,
            retry=retry,
            predict_path=predict_path,
            legacy_path=legacy_path,
            fallback=fallback,
        )
        self.stats = ClientStats()
        self._http = httpx.AsyncClient(
            base_url=self.config.base_url,
            timeout=self.config.timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncAIFXClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def enabled(self) -> bool:
        """False when ML_API_ENABLED=false: every call then raises MLDisabled."""
        return self.config.enabled

    # ---- routes ------------------------------------------------------------------------------

    async def health(self) -> Health:
        """GET /health (answers even when the service reports itself unhealthy with a 503)."""
        return await self._run(calls.health())

    async def predict(
        self,
        pair: str,
        timeframe: str = "1h",
        *,
        data: calls.Candles | None = None,
        features: Sequence[Sequence[float]] | None = None,
        version: str | None = None,
        user_id: str | None = None,
    ) -> Prediction:
        """POST /reversal/predict, falling back to the legacy /predict (source="legacy") if it fails."""
        req = calls.build_request(pair, timeframe, data, features, version=version, user_id=user_id)
        return await self.predict_request(req)

    async def predict_request(self, req: PredictRequest) -> Prediction:
        """predict() for a ready-made PredictRequest."""
        try:
            return await self._run(calls.predict(req, self.config.predict_path))
        except AIFXError as exc:
            if not (self.config.fallback and protocol.may_fall_back(exc)):
                raise
            primary = exc
        return await self._legacy(req, primary)

    async def predict_batch(self, items: Sequence[PredictRequest | Mapping[str, Any]]) -> list[BatchItem]:
        """POST /reversal/predict/batch: one BatchItem per item, in order."""
        return await self._run(calls.predict_batch(items))

    async def compare(
        self,
        pair: str,
        timeframe: str = "1h",
        *,
        data: calls.Candles | None = None,
        features: Sequence[Sequence[float]] | None = None,
        versions: Sequence[str] | None = None,
    ) -> Comparison:
        """POST /reversal/compare (versions default to every loaded one)."""
        return await self._run(calls.compare(calls.build_request(pair, timeframe, data, features), versions))

    async def models(self) -> ModelsInfo:
        """GET /reversal/models."""
        return await self._run(calls.models())

    async def model_info(self, version: str) -> ModelInfo:
        """GET /reversal/models/{version}."""
        return await self._run(calls.model_info(version))

    async def switch_version(self, version: str) -> SwitchResult:
        """POST /reversal/models/{version}/switch (admin)."""
        return await self._run(calls.switch_version(version))

    async def create_experiment(
        self,
        experiment_id: str,
        name: str,
        variant_a: str,
        variant_b: str,
        traffic_split: float = 0.5,
        description: str = "",
    ) -> Experiment:
        """POST /reversal/experiments (admin); traffic_split is the share of users sent to variant B."""
        return await self._run(
            calls.create_experiment(experiment_id, name, variant_a, variant_b, traffic_split, description)
        )

    async def activate_experiment(self, experiment_id: str) -> Experiment:
        """POST /reversal/experiments/{id}/activate (admin)."""
        return await self._run(calls.activate_experiment(experiment_id))

    async def stop_experiment(self, experiment_id: str) -> Experiment:
        """POST /reversal/experiments/{id}/stop (admin)."""
        return await self._run(calls.stop_experiment(experiment_id))

    async def experiments(self) -> list[Experiment]:
        """GET /reversal/experiments."""
        return await self._run(calls.experiments())

    async def experiment_metrics(self, experiment_id: str) -> ExperimentMetrics:
        """GET /reversal/experiments/{id}/metrics."""
        return await self._run(calls.experiment_metrics(experiment_id))

    async def record_outcome(self, prediction_id: str, pips: float) -> Outcome:
        """POST /reversal/predictions/{prediction_id}/outcome with the realized pips (sends the outcome token)."""
        return await self._run(calls.record_outcome(prediction_id, pips))

    async def post_candles(self, pair: str, timeframe: str, candles: calls.Candles) -> CandlesResult:
        """POST /reversal/candles (sends the outcome token): each closed candle, once; its bar's signal is streamed."""
        return await self._run(calls.post_candles(pair, timeframe, candles))

    async def latest_signal(self, pair: str, timeframe: str = "1h") -> SignalEvent | None:
        """GET /reversal/signals/latest: the last bar's signal event (None before the first)."""
        return await self._run(calls.latest_signal(pair, timeframe))

    def signals(
        self, pair: str, timeframe: str = "1h", *, last_event_id: int | None = None, reconnect: Reconnect | None = None
    ) -> AsyncGenerator[SignalEvent, None]:
        """GET /reversal/signals/stream: each bar's SignalEvent as trusted candles close it, without end.

        A dropped or ended connection is opened again with Last-Event-ID after a bounded backoff, so no
        event is lost or repeated; last_event_id resumes after an event seen before. Close the iterator
        to end the subscription (contextlib.aclosing, or contextlib.closing with the sync client).
        """
        return self._follow(pair, timeframe, last_event_id, reconnect or Reconnect())
