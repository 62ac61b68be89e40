"""A bounded write-behind queue: producers never wait, one daemon thread writes batches.

put() only appends under a lock (safe from an asyncio event loop); when the queue is full, in rows
or in bytes (size_of estimates a row's), the row is dropped and counted. The thread writes whatever
is queued at least every flush_every_s; close() writes everything still queued. A SIGKILL loses
everything queued or being written (pending()): with a database that keeps up, the rows of the last
flush_every_s and the batch in flight; with a slow one, up to the whole bound. A failing write
(database unreachable) drops its batch and counts it; producers are never blocked by the database.
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
        max_bytes: int | None = None,
        size_of: Callable[[T], int] | None = None,
        idle: Callable[[], object] | None = None,
    ) -> None:
        if capacity < 1 or max_batch < 1 or flush_every_s <= 0 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("capacity, max_batch and max_bytes must be >= 1 and flush_every_s > 0")
        self._max_bytes = max_bytes
        self._idle = idle  # called by the thread when a cycle found nothing to write (e.g. replay a spool)
        self._size_of = size_of or (lambda _row: 1)
        self._bytes = 0  # estimated bytes queued or being written
        self._write_batch = write_batch
        self._capacity = capacity
        self._flush_every_s = flush_every_s
        self._max_batch = max_batch
        self._on_drop = on_drop
        self._queue: deque[tuple[T, int]] = deque()
        self._lock = threading.Lock()  # guards _queue and _closed; held for O(1) work only
        self._writing = threading.Lock()  # one writer at a time: the thread, flush() or close()
        self._in_flight = self._in_flight_bytes = 0
        self._wake = threading.Event()
        self._closed = False
        self._stop = threading.Event()
        self._logged_at, self._unlogged = -LOG_EVERY_S, 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, row: T) -> bool:
        """Queue a row without waiting; False (and on_drop) when full or closed."""
        size = self._size_of(row) if self._max_bytes is not None else 0
        with self._lock:
            full = len(self._queue) >= self._capacity or (
                self._max_bytes is not None and self._bytes + size > self._max_bytes
            )
            reason = "closed" if self._closed else "full" if full else None
            if reason is None:
                self._queue.append((row, size))
                self._bytes += size
                if len(self._queue) == self._max_batch:
                    self._wake.set()  # a full batch is ready: no need to wait for the timer
                return True
        self._dropped(reason, 1)
        return False

    def pending(self) -> int:
        """Rows queued or being written (what a SIGKILL would lose now)."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def pending_bytes(self) -> int:
        """Estimated bytes of the rows queued or being written (0 without max_bytes)."""
        with self._lock:
            return self._bytes

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
            if self._idle is not None and not self.pending():
                try:
                    self._idle()
                except Exception:  # noqa: BLE001 - the idle work retries next cycle
                    log.debug("write-behind: idle work failed", exc_info=True)
            self._wake.wait(max(0.0, self._flush_every_s - (time.monotonic() - started)))
            self._wake.clear()
        self.flush()  # rows put before close() are written, not lost

    def _write_one_batch(self) -> bool:
        """Take up to max_batch rows and write them; False when the queue was empty."""
        with self._lock:
            n = min(len(self._queue), self._max_batch)
            taken = [self._queue.popleft() for _ in range(n)]
            self._in_flight, self._in_flight_bytes = n, sum(size for _, size in taken)
        if not taken:
            return False
        batch = [row for row, _ in taken]
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
                self._bytes -= self._in_flight_bytes
                self._in_flight = self._in_flight_bytes = 0
        return True

    def _dropped(self, reason: str, n: int) -> None:
        if self._on_drop is None:
            return
        try:
            self._on_drop(reason, n)
        except Exception:  # a broken counter must not break producers or the writer
            log.exception("write-behind: on_drop failed")
