"""A webhook receiver on a loopback port for the tests: a minimal HTTP/1.1 server (keep-alive,
Content-Length bodies) that records every request and answers what the test sets per path:
a status, and optionally waits on a gate first (a slow endpoint)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float


@dataclass
class Receiver:
    statuses: dict[str, int] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        for gate in self.gates.values():
            gate.set()
        self._server.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str, answered: int | None = 200) -> list[Request]:
        """The requests to ``path`` (that got ``answered``; None: all)."""
        return [r for r in self.requests if r.path == path and (answered is None or r.answered == answered)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if path in self.gates:
                    await self.gates[path].wait()
                status = self.statuses.get(path, 200)
                self.requests.append(Request(path, headers, body, status, time.monotonic()))
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
