"""The participant's HTTP transport against a real HTTP server on a real socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from gateway.client.http import GatewayUnreachable, SoapHttp

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """An aiohttp server on a free port that records what it was sent."""

    def __init__(self, handler: Handler) -> None:
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self.peers: set[object] = set()  # client (host, port): one per connection
        self._handler = handler
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        self.content_types.append(request.headers.get("Content-Type", ""))
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return await self._handler(request)

    async def __aenter__(self) -> Server:
        app = web.Application()
        app.router.add_post("/ws", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def soap_reply(request: web.Request) -> web.Response:
    return web.Response(body=b"<Envelope/>", status=200, content_type="text/xml")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server(soap_reply) as running:
        yield running


async def test_posts_soap_and_returns_status_and_body(server: Server) -> None:
    async with SoapHttp(server.url) as call:
        status, body = await call(b"<soap/>")

    assert (status, body) == (200, b"<Envelope/>")
    assert server.bodies == [b"<soap/>"]
    assert server.content_types == ["text/xml; charset=utf-8"]


async def test_a_fault_status_is_returned_not_raised() -> None:
    async def fault(request: web.Request) -> web.Response:
        return web.Response(body=b"<Fault/>", status=500, content_type="text/xml")

    async with Server(fault) as server, SoapHttp(server.url) as call:
        assert await call(b"<soap/>") == (500, b"<Fault/>")


async def test_connections_are_kept_alive_unless_told_not_to(server: Server) -> None:
    async with SoapHttp(server.url) as call:
        for _ in range(5):
            await call(b"<soap/>")
    assert len(server.peers) == 1

    server.peers.clear()
    async with SoapHttp(server.url, keep_alive=False) as call:
        for _ in range(5):
            await call(b"<soap/>")
    assert len(server.peers) == 5


async def test_a_refused_connection_is_gateway_unreachable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ws"
    async with SoapHttp(url) as call:
        with pytest.raises(GatewayUnreachable, match=f"POST {url} got no answer"):
            await call(b"<soap/>")


async def test_no_answer_within_the_timeout_is_gateway_unreachable() -> None:
    never = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await never.wait()
        raise AssertionError("unreachable")

    async with Server(stall) as server, SoapHttp(server.url, timeout=0.2) as call:
        with pytest.raises(GatewayUnreachable, match="TimeoutError"):
            await call(b"<soap/>")
        never.set()  # let the server shut down without waiting for the handler
