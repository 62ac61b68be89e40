"""A lean keep-alive HTTP/1.1 client for the soak test (the client shares the 2 cores with the server).

Requests are encoded once where they can be; each worker holds one connection and reads responses
by Content-Length or chunked encoding. A transport error or a response slower than the timeout is
recorded as an error (status 0), so a hang shows up in the report instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


def encode(method: str, path: str, host: str, body: Any = None, headers: dict[str, str] | None = None) -> bytes:
    """One complete HTTP/1.1 request."""
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:] if ln)}
    if b"content-length" in fields:
        return status, await reader.readexactly(int(fields[b"content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        body += (await reader.readexactly(size + 2))[:size]
        if size == 0:
            return status, body


@dataclass
class Connection:
    """One keep-alive connection that reconnects after any failure."""

    host: str
    port: int
    timeout: float
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """(status, body); (0, error text) on a transport error or timeout."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(raw)
            return await asyncio.wait_for(read_response(self.reader), self.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, asyncio.LimitOverrunError) as exc:
            self.close()
            return 0, f"{type(exc).__name__}: {exc}".encode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
