"""Counters of what a client did (requests, retries, fallbacks, failures)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class ClientStats:
    """Per-client counters; safe to update from several threads."""

    requests: int = 0  # HTTP attempts sent (retries included)
    retries: int = 0  # attempts repeated after a connection error or a 5xx
    fallbacks: int = 0  # predictions answered by the legacy /predict route
    failures: int = 0  # calls that raised after every attempt
    reconnects: int = 0  # signal streams opened again after a drop, an end or a refusal
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str, n: int = 1) -> None:
        """Add n to one counter."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            for f in fields(self):
                if not f.name.startswith("_"):
                    setattr(self, f.name, 0)
