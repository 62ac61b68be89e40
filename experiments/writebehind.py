"""A bounded write-behind queue: producers never wait, one daemon thread writes batches.

put() only appends under a lock (safe from an asyncio event loop); when the queue is full the row
is dropped and counted. The thread writes whatever is queued at least every flush_every_s, so a
SIGKILL loses about that much; close() writes everything still queued. A failing write (database
unreachable) drops its batch and counts it; producers are never blocked by the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
LOG_EVERY_S = 30.0  # while writes keep failing, one warning per interval


class WriteBehind(Generic[T]):
    """Rows queued by put(), written in batches by write_batch on a daemon thread."""

    def __init__(
        self,
        write_batch: Callable[[list[T]], object],
        capacity: int = 50_000,
        flush_every_s: float = 0.25,
        max_batch: int = 2_000,
        on_drop: Callable[[str, int], None] | None = None,
        name: str = "write-behind",
    ) -> None:
        if capacity < 1 or max_batch < 1 or flush_every_s <= 0:
            raise ValueError("capacity and max_batch must be >= 1 and flush_every_s > 0")
        self._write_batch = write_batch
        self._capacity = capacity
        self._flush_every_s = flush_every_s
        self._max_batch = max_batch
        self._on_drop = on_drop
        self._queue: deque[T] = deque()
        self._lock = threading.Lock()  # guards _queue and _closed; held for O(1) work only
        self._writing = threading.Lock()  # one writer at a time: the thread, flush() or close()
        self._in_flight = 0
        self._wake = threading.Event()
        self._closed = False
        self._stop = threading.Event()
        self._logged_at, self._unlogged = -LOG_EVERY_S, 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, row: T) -> bool:
        """Queue a row without waiting; False (and on_drop) when full or closed."""
        with self._lock:
            reason = "closed" if self._closed else "full" if len(self._queue) >= self._capacity else None
            if reason is None:
                self._queue.append(row)
                if len(self._queue) == self._max_batch:
                    self._wake.set()  # a full batch is ready: no need to wait for the timer
                return True
        self._dropped(reason, 1)
        return False

    def pending(self) -> int:
        """Rows queued or being written."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def flush(self) -> None:
        """Write everything queued now, in the caller's thread (waits for a write in progress)."""
        with self._writing:
            while self._write_one_batch():
                pass

    def close(self, timeout: float = 10.0) -> bool:
        """Refuse new rows, write the queued ones and stop the thread; True when nothing is left."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive() and self.pending() == 0

    def _run(self) -> None:
        """Write at least every flush_every_s (sooner when a full batch waits) until closed."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.flush()
            self._wake.wait(max(0.0, self._flush_every_s - (time.monotonic() - started)))
            self._wake.clear()
        self.flush()  # rows put before close() are written, not lost

    def _write_one_batch(self) -> bool:
        """Take up to max_batch rows and write them; False when the queue was empty."""
        with self._lock:
            n = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight = n
        if not batch:
            return False
        try:
            self._write_batch(batch)
        except Exception as exc:  # the database is down or refused the batch: drop it, keep going
            self._unlogged += n
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_S:  # one line per interval while the database is down
                log.warning("write-behind: dropped %d rows, the write failed: %s", self._unlogged, exc)
                self._logged_at, self._unlogged = now, 0
            self._dropped("database", n)
        finally:
            with self._lock:
                self._in_flight = 0
        return True

    def _dropped(self, reason: str, n: int) -> None:
        if self._on_drop is None:
            return
        try:
            self._on_drop(reason, n)
        except Exception:  # a broken counter must not break producers or the writer
            log.exception("write-behind: on_drop failed")
