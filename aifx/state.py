"""Shared service state (the active model version) behind a tiny interface.

The state lives in the experiments store's settings table (SQLite file in WAL mode by
default, PostgreSQL by AIFX_DATABASE_URL), so every worker sees a switch and it survives
restarts. Workers read it through a cache whose TTL is at most one second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from experiments import ExperimentStore

logger = logging.getLogger("bentoml.aifx.state")


class VersionStore(Protocol):
    """Where the active version lives."""

    def get_active_version(self) -> str | None: ...

    def set_active_version(self, version: str) -> None: ...


class CachedActiveVersion:
    """Reads the active version at most once per ttl seconds; writes go straight through."""

    def __init__(self, store: VersionStore, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._value: str | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> str | None:
        now = self._clock()
        if now - self._read_at >= self.ttl:
            with self._lock:
                if now - self._read_at >= self.ttl:
                    self._value = self._read()
                    self._read_at = now
        return self._value

    def _read(self) -> str | None:
        """The stored value; the last known one while the store is unreachable (retried after ttl)."""
        try:
            return self.store.get_active_version()
        except Exception as exc:  # noqa: BLE001 - a database outage must not stop serving
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            logger.warning("active version unreadable, keeping %r: %s", self._value, first)
            return self._value

    def set(self, version: str) -> None:
        with self._lock:
            self.store.set_active_version(version)
            self._value = version
            self._read_at = self._clock()


def open_store(database_url: str) -> ExperimentStore:
    """The state store for a database URL (the experiments store: SQLite or PostgreSQL)."""
    from experiments import ExperimentStore

    return ExperimentStore(database_url)
