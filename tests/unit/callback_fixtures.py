"""Callback fixtures: names that resolve without DNS, and a portal's callback endpoint.

:func:`public_guard` is the SSRF guard with the portals' test names resolving to public
addresses through a :class:`StaticResolver` (no test asks DNS).

:class:`CallbackReceiver` is a real HTTP/1.1 listener on 127.0.0.1. It counts the TCP
connections made to it (so a test can show that *nothing* reached it), records every
request, and answers from a script: a status, ``"drop"`` (close the connection without
an answer) or ``"hang"`` (never answer while the receiver runs). Callbacks reach it only
through an explicit ``127.0.0.0/8`` in the sender's networks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from gateway.aggregator.callback_guard import CallbackGuard, StaticResolver

#: Public addresses (example.com's) that the tests' names resolve to; never connected to.
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
#: The portals' host names of the tests.
PUBLIC_NAMES = {
    name: [PUBLIC_V4, PUBLIC_V6]
    for name in (
        "portal.example",
        "mfc.gov71.example",
        "gov71.example",
        "portal.example.evil.example",
        "xn--80awhdgm.xn--p1ai",  # портал.рф
    )
}


def public_guard(**kw: Any) -> CallbackGuard:
    """The guard with :data:`PUBLIC_NAMES` and nothing else resolvable."""
    return CallbackGuard(resolver=StaticResolver(PUBLIC_NAMES), **kw)


Answer = int | str


@dataclass(frozen=True)
class Received:
    method: str
    #: Path and query, as sent.
    target: str
    #: Lower-case names.
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    """``async with CallbackReceiver(answers) as receiver``: listening on ``receiver.port``."""

    def __init__(self, answers: list[Answer] | None = None) -> None:
        self.answers: list[Answer] = list(answers or [])
        self.received: list[Received] = []
        self.connections = 0
        self.port = 0
        self._stop = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    def url(self, host: str = "127.0.0.1", path: str = "/smevbus/results") -> str:
        return f"http://{host}:{self.port}{path}"

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.received]

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for another."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.received.append(Received(method, target, headers, body))
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "drop":
            return False
        if answer == "hang":
            await self._stop.wait()
            return False
        writer.write(f"HTTP/1.1 {answer} Scripted\r\nContent-Length: 7\r\n\r\nignored".encode())
        await writer.drain()
        return True
