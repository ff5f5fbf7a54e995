"""pika's AMQP connections on the event loop's own socket transport.

pika's asyncio adapter brings its own transport: it watches the socket with
``add_writer`` until its buffer is sent and then ``remove_writer``, so every burst of
frames (a publish, a ``basic.get``, an ack) costs two ``epoll_ctl`` calls and a turn of
the loop before its first byte leaves, and every read passes through three Python
frames of its own. The loop's transport (uvloop's in ``smevbus serve``) writes at once,
in C, and hands what it reads straight to the protocol. :class:`LoopConnection` also
hands it a publish's frames (method, header, body) in one call, so they leave in one
send, not three.

pika's stream protocol and transport interfaces are asyncio's, by design
(``pika.adapters.utils.nbio_interface``): the loop's transport serves pika as it is,
and :class:`_Protocol` only adds the flow-control calls an asyncio transport makes and
pika's protocol does not take (pika buffers without bound either way).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from pika.adapters.asyncio_connection import AsyncioConnection, _AsyncioIOServicesAdapter
from pika.adapters.utils.nbio_interface import AbstractIOReference


class LoopConnection(AsyncioConnection):  # type: ignore[misc]
    """pika's asyncio connection on :class:`LoopStreams` of the running loop."""

    def __init__(self, parameters: Any, *callbacks: Any) -> None:
        super().__init__(
            parameters, *callbacks, custom_ioloop=LoopStreams(asyncio.get_running_loop())
        )

    def _output_marshaled_frames(self, marshaled_frames: Sequence[bytes]) -> None:
        # pika's own writes each frame apart; the bytes and the counts are the same.
        self.bytes_sent += sum(map(len, marshaled_frames))
        self.frames_sent += len(marshaled_frames)
        self._transport.writelines(marshaled_frames)


class LoopStreams(_AsyncioIOServicesAdapter):  # type: ignore[misc]
    """pika's asyncio I/O services, with streams on ``loop.create_connection``."""

    def create_streaming_connection(
        self,
        protocol_factory: Callable[[], Any],
        sock: socket.socket,
        on_done: Callable[[Any], None],
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> AbstractIOReference:
        """Link ``protocol_factory()`` to the connected ``sock`` (its TLS handshake
        made first, when there is a context); ``on_done((transport, protocol))``, or
        ``on_done(error)``. Cancelled, it closes the socket and calls nothing."""

        loop: asyncio.AbstractEventLoop = self.get_native_ioloop()

        async def link() -> None:
            try:
                transport, linked = await loop.create_connection(
                    lambda: _Protocol(protocol_factory()),
                    sock=sock,
                    ssl=ssl_context,
                    server_hostname=server_hostname if ssl_context is not None else None,
                )
            except Exception as error:  # pika reports it as a transport setup error
                sock.close()
                on_done(error)
                return
            on_done((transport, linked.protocol))

        task = loop.create_task(link())
        # Cancelled, even before it began: the socket is still ours to close.
        task.add_done_callback(lambda done: sock.close() if done.cancelled() else None)
        return _Linking(task)


class _Protocol(asyncio.Protocol):
    """pika's stream protocol as the loop's transport calls it: its own four callbacks
    (no frame of ours between a read and pika), asyncio's no-op flow control."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.connection_made = protocol.connection_made  # type: ignore[method-assign]
        self.data_received = protocol.data_received  # type: ignore[method-assign]
        self.eof_received = protocol.eof_received  # type: ignore[method-assign]
        self.connection_lost = protocol.connection_lost  # type: ignore[method-assign]


class _Linking(AbstractIOReference):  # type: ignore[misc]
    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    def cancel(self) -> bool:
        return self._task.cancel()
