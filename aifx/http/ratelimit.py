"""A per-client rate limit in each worker: token buckets keyed by a valid token's identity, else client address.

Only the configured tokens name a client: a random bearer per request would otherwise get a fresh
bucket each time. The address is the peer's, or a trusted proxy's X-Forwarded-For (AIFX_TRUSTED_PROXIES).

Per worker, so the service-wide limit is this times the workers; a limit shared by every pod
belongs at the ingress (deploy/k8s/50-ingress.yaml). Answers 429 in the seed envelope with Retry-After.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aifx import metrics
from aifx.http.access import client_address, header, token_identity
from aifx.serving.errors import envelope
from aifx.settings import Settings

EXEMPT = frozenset({"/health"})  # probes must not be throttled


class TokenBuckets:
    """rate tokens per second up to burst, per key; the least recently seen keys are forgotten first."""

    def __init__(
        self, rate: float, burst: int, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds until the next token."""
        now = self._clock()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens - 1.0 if wait == 0.0 else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def client_key(scope: dict[str, Any], settings: Settings | None = None) -> str:
    """The caller: the identity of a valid token ("token:admin"), else its address."""
    settings = settings or Settings()
    identity = token_identity(settings, header(scope, b"authorization"))
    if identity is not None:
        return f"token:{identity}"
    return f"addr:{client_address(settings, scope)}"


def buckets_of(rate: float, burst: int) -> TokenBuckets | None:
    """The token buckets of a rate limit, or None when rate is 0 (off)."""
    return TokenBuckets(rate, burst) if rate > 0 else None


class RateLimit:
    """ASGI middleware over TokenBuckets (off when rate is 0)."""

    def __init__(
        self,
        app: Any,
        rate: float = 0.0,
        burst: int = 1,
        buckets: TokenBuckets | None = None,
        settings: Settings | None = None,
    ) -> None:
        """Buckets of rate and burst, or shared buckets (None when rate is 0: no limit); settings name tokens."""
        self.app = app
        self.settings = settings or Settings()
        self.buckets = buckets if buckets is not None else (TokenBuckets(rate, burst) if rate > 0 else None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.buckets is None or scope["type"] != "http" or scope.get("path") in EXEMPT:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_key(scope, self.settings))
        if wait == 0.0:
            await self.app(scope, receive, send)
            return
        metrics.count_error("rate_limited")
        retry = max(1, math.ceil(wait))
        message = f"too many requests from this client; retry after {retry} s"
        body = json.dumps(envelope(None, message)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})
