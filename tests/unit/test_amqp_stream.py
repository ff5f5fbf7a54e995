"""pika's streams on the loop's transport (:mod:`gateway.transport.amqp_stream`), against
real local servers: plaintext and TLS both carry bytes both ways and report the end of
the stream as pika's protocol expects; a TLS handshake that fails is reported to
``on_done``; a link cancelled before it is made closes its socket and reports nothing."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.core.clock import FakeClock
from gateway.crypto import devpki
from gateway.transport.amqp_stream import LoopStreams


class _Recorder:
    """pika's stream protocol interface, recording what it is told."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.data = bytearray()
        self.eof = False
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.received = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.received.set()

    def eof_received(self) -> bool:
        self.eof = True
        return False  # as pika's: the transport closes itself

    def connection_lost(self, error: BaseException | None) -> None:
        self.lost.set_result(error)


async def _echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo one read back, then close: the client sees its bytes, then the end."""
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()


async def _server(context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo_once, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _connected(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def _link(
    sock: socket.socket, protocol: _Recorder, context: ssl.SSLContext | None = None
) -> Any:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    LoopStreams(asyncio.get_running_loop()).create_streaming_connection(
        lambda: protocol, sock, done.set_result, context, "localhost"
    )
    return await done


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Callable[[], ssl.SSLContext]]:
    clock = FakeClock(datetime.now(UTC))
    ca = devpki.new_ca(clock)
    server = devpki.issue_tls_server(ca, ["localhost"], clock)
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem())
    (tmp_path / "server.pem").write_bytes(server.cert_pem())
    (tmp_path / "server.key").write_bytes(server.key_pem())
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")

    def client_context() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=tmp_path / "ca.pem")

    return server_context, client_context


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "tls"])
async def test_bytes_travel_both_ways_and_the_end_is_reported(
    secure: bool, tls: tuple[ssl.SSLContext, Callable[[], ssl.SSLContext]]
) -> None:
    server_context, client_context = tls
    async for port in _server(server_context if secure else None):
        protocol = _Recorder()
        transport, linked = await _link(
            _connected(port), protocol, client_context() if secure else None
        )
        assert linked is protocol
        assert protocol.transport is transport
        transport.write(b"frame")
        lost = await protocol.lost
        assert bytes(protocol.data) == b"frame"
        assert (lost, protocol.eof) == (None, True)


async def test_a_failed_tls_handshake_goes_to_on_done(
    tls: tuple[ssl.SSLContext, Callable[[], ssl.SSLContext]],
) -> None:
    server_context, _client_context = tls
    untrusted = ssl.create_default_context()  # the system's CAs: not the dev CA
    async for port in _server(server_context):
        sock = _connected(port)
        result = await _link(sock, _Recorder(), untrusted)
        assert isinstance(result, ssl.SSLCertVerificationError)
        assert sock.fileno() == -1  # closed


async def test_a_cancelled_link_closes_its_socket_and_reports_nothing() -> None:
    async for port in _server():
        sock = _connected(port)
        reported: list[Any] = []
        linking = LoopStreams(asyncio.get_running_loop()).create_streaming_connection(
            lambda: _Recorder(), sock, reported.append
        )
        assert linking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await linking._task
        assert reported == []
        assert sock.fileno() == -1
