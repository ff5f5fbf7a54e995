"""An agency played by a real HTTP server on 127.0.0.1 (aiohttp), for the adapter kit.

``async with PlayedAgency(answer) as agency``: every POST is recorded in ``sent`` and
answered by ``answer(body) -> (status, body, headers)``, which a test may replace.
``agency.base_url`` is where an :class:`~adapters.sdk.xml_http.AgencyHttp` reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from gateway.testing.processes import free_port

#: What the agency answers, (status, body, headers), for the body it was sent.
Answer = Callable[[bytes], tuple[int, bytes, dict[str, str]]]


class PlayedAgency:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[bytes] = []
        #: The Host header of each request (a proxy is asked for another host).
        self.hosts: list[str | None] = []
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.sent.append(body)
        self.hosts.append(request.headers.get("Host"))
        status, content, headers = self.answer(body)
        return web.Response(status=status, body=content, headers=headers)

    async def __aenter__(self) -> Self:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._runner.cleanup()
