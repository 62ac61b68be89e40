"""A bounded on-disk spool of write batches, for while the database refuses connections.

One directory per worker (files `<seq>.spool`, pickled row lists written atomically, directory mode
0700: only this service's user reads or writes them). Batches are replayed oldest first once the
database answers again; a restarted worker with the same directory replays what its predecessor left.
Beyond max_bytes a batch is not spooled: the caller drops it and counts it.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SUFFIX = ".spool"


class Spool:
    """Batches on disk, oldest first, at most max_bytes in all."""

    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one writer (the write-behind thread), but pending() may be read anywhere
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self.directory.glob("*.tmp"):  # a write interrupted by a kill: never renamed, never counted
            leftover.unlink(missing_ok=True)
        self._files = sorted(self.directory.glob(f"*{SUFFIX}"))
        self._bytes = sum(f.stat().st_size for f in self._files)
        self._seq = int(self._files[-1].stem) + 1 if self._files else 0
        if self._files:
            log.warning("spool %s: %d batches (%d bytes) left by a previous worker", directory, *self.pending())

    def pending(self) -> tuple[int, int]:
        """Batches and bytes spooled."""
        with self._lock:
            return len(self._files), self._bytes

    def put(self, rows: list[Any]) -> bool:
        """Spool one batch; False (nothing written) when it would pass max_bytes or the disk refuses it."""
        data = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                return False
            path = self.directory / f"{self._seq:012d}{SUFFIX}"
            tmp = path.with_suffix(".tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # a spooled batch survives the worker's death
                tmp.replace(path)
            except OSError as exc:
                log.warning("spool %s: cannot write a batch: %s", self.directory, exc)
                tmp.unlink(missing_ok=True)
                return False
            self._seq += 1
            self._files.append(path)
            self._bytes += len(data)
            return True

    def replay(self, write: Callable[[list[Any]], object]) -> int:
        """Write spooled batches oldest first until one fails (its exception propagates); the rows written."""
        written = 0
        while True:
            with self._lock:
                if not self._files:
                    return written
                path = self._files[0]
            try:
                rows = pickle.loads(path.read_bytes())  # noqa: S301 - our own files, in a 0700 directory
            except (OSError, pickle.UnpicklingError, EOFError) as exc:
                log.warning("spool %s: unreadable batch %s dropped: %s", self.directory, path.name, exc)
                rows = []
            if rows:
                write(rows)  # raises while the database still refuses: the batch stays
            with self._lock:
                size = path.stat().st_size if path.exists() else 0
                path.unlink(missing_ok=True)
                self._files.pop(0)
                self._bytes -= size
            written += len(rows)
