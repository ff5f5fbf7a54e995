"""The hot path's AMQP connections: confirmed publishes, ``basic.get`` and consumers, on
pika.

aio-pika (over aiormq) keeps the transport's robust connection for the topology and
the dead-letter watch and sweeps. What it costs per operation is mostly the way its
frames travel: through a write queue and a writer task, a reader task, and a queue
and a task per channel, so every publish, confirm, get, delivery and ack takes several
turns of the event loop, each a wait behind whatever else the loop has to do. pika
answers from the read callback of the loop's own socket transport
(:mod:`gateway.transport.amqp_stream`) and writes at once
(``benchmarks/amqp_client.py``: a confirmed publish and a ``basic.get`` + ack cost
~0.3-0.4 ms less per pull round trip than through aio-pika; in a loaded gateway more).

A lane opens lazily, and again on the next operation after its connection or one of
its channels closed. An operation in flight when that happens fails with
:class:`LaneClosed`, a ``ConnectionError``: ``ride_out_reconnects`` makes it again; a
consumer is told its channel went (:meth:`AmqpLane.consume`'s ``lost``). A
``basic.get`` given up (its caller's timeout) closes its channel, so a message the
broker hands over late goes back to its queue rather than sit unacked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import pika
import pika.exceptions
import structlog
from pika import spec

from gateway.transport.amqp_stream import LoopConnection

log = structlog.get_logger(__name__)

#: What pika raises for an operation on a channel or connection that is gone.
_GONE = (
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.ConnectionWrongStateError,
    pika.exceptions.ConnectionClosed,
)

#: Longest wait for the broker to answer a close (s).
CLOSE_TIMEOUT = 5.0


async def _close(closable: Any) -> None:
    """Close a pika connection or channel and wait for the broker's answer (at most
    :data:`CLOSE_TIMEOUT` s)."""
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_close(*_: object) -> None:
        if not closed.done():
            closed.set_result(None)

    closable.add_on_close_callback(on_close)
    with contextlib.suppress(*_GONE):
        closable.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(closed, CLOSE_TIMEOUT)


class LaneClosed(ConnectionError):
    """The lane's connection or channel is gone (a reconnect cures it)."""


class Unroutable(Exception):
    """A ``mandatory`` publish that no queue took (the broker returned it)."""


class Refused(Exception):
    """A publish the broker nacked (a full queue refusing new messages, say)."""


class NotFound(Exception):
    """The broker closed a channel for a missing exchange or queue (404)."""


class AmqpLane:
    """One pika connection: a confirm-mode channel for publishes, one for ``basic.get``."""

    def __init__(self, url: str, connection_name: str) -> None:
        self._parameters = pika.URLParameters(url)
        self._parameters.client_properties = {"connection_name": connection_name}
        self._name = connection_name
        self._connection: Any = None
        self._publishing: _Publishing | None = None
        self._getting: _Getting | None = None
        self._opening = asyncio.Lock()
        self._opened_once = False
        self._closed = False

    async def ready(self) -> None:
        """Open what is not open (the connection, the publish and get channels)."""
        if self._publishing is not None and self._getting is not None:
            return
        async with self._opening:
            connection = await self._connected()
            if self._publishing is None:
                self._publishing = await _Publishing.open(connection, self._forget)
            if self._getting is None:
                self._getting = await _Getting.open(connection, self._forget)

    async def connected(self) -> None:
        """Open the connection if it is not open (consumers need no more)."""
        if self._connection is None:
            async with self._opening:
                await self._connected()

    async def _connected(self) -> Any:
        if self._closed:
            raise LaneClosed("the transport is closed")
        if self._connection is None:
            self._connection = await self._connect()
            if self._opened_once:
                log.warning("transport_reconnected", connection=self._name)
            self._opened_once = True
        return self._connection

    async def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        """Publish (persistent, ``mandatory``) and wait for the broker's confirm."""
        if self._publishing is None:
            raise LaneClosed("the publishing channel is not open")
        await self._publishing.publish(exchange, routing_key, body, properties)

    async def get(self, queue: str) -> LaneMessage | None:
        """``basic.get`` with a manual ack: a message, or None when ``queue`` is empty."""
        if self._getting is None:
            raise LaneClosed("the getting channel is not open")
        return await self._getting.get(queue)

    async def consume(
        self,
        queue: str,
        prefetch: int,
        received: Callable[[LaneMessage], None],
        lost: Callable[[], None],
    ) -> Consuming:
        """A consumer of ``queue`` on a channel of its own: ``received`` is called with
        each message, ``lost`` once the channel is gone (consume again then)."""
        async with self._opening:
            connection = await self._connected()
        return await Consuming.open(connection, queue, prefetch, received, lost)

    async def close(self) -> None:
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await _close(connection)

    async def _connect(self) -> Any:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()

        def on_open(connection: Any) -> None:
            if not opened.done():
                opened.set_result(connection)

        def on_open_error(_: Any, error: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(LaneClosed(f"cannot open a connection: {error!r}"))

        def on_close(connection: Any, reason: BaseException) -> None:
            if connection is not self._connection:
                return
            log.warning("transport_lane_closed", connection=self._name, reason=repr(reason))
            self._connection = None
            # pika closes the channels first; should one be left, it goes too.
            for channel in (self._publishing, self._getting):
                if channel is not None:
                    self._forget(channel)
                    channel.fail(LaneClosed(f"connection closed: {reason!r}"))

        connection = LoopConnection(self._parameters, on_open, on_open_error, on_close)
        try:
            return await opened
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise

    def _forget(self, channel: _Publishing | _Getting) -> None:
        """``channel`` closed: the next operation opens another."""
        if channel is self._publishing:
            self._publishing = None
        elif channel is self._getting:
            self._getting = None


class _Channel:
    """A pika channel, and what closing it does to the operations waiting on it."""

    def __init__(self, channel: Any, forget: Callable[[Any], None]) -> None:
        self.channel = channel
        self._forget = forget
        #: The broker's answer awaited by :meth:`_wait`, if any.
        self._step: asyncio.Future[None] | None = None
        channel.add_on_close_callback(self._on_close)

    @staticmethod
    async def _open_channel(connection: Any) -> Any:
        opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_open(channel: Any) -> None:
            if not opened.done():
                opened.set_result(channel)

        def on_close(_: Any, reason: BaseException) -> None:
            if not opened.done():
                opened.set_exception(LaneClosed(f"channel closed while opening: {reason!r}"))

        try:
            connection.channel(on_open_callback=on_open).add_on_close_callback(on_close)
        except _GONE as exc:
            raise LaneClosed(f"cannot open a channel: {exc!r}") from exc
        return await opened

    async def _wait(self, send: Callable[[Callable[[Any], None]], None]) -> None:
        """Send a method with ``send(done)`` and wait for the broker's answer (``done``
        called) or the channel's close."""
        step: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._step = step

        def done(_: Any) -> None:
            if not step.done():
                step.set_result(None)

        try:
            send(done)
        except _GONE as exc:
            raise LaneClosed(f"channel closed: {exc!r}") from exc
        await step

    def _on_close(self, _: Any, reason: BaseException) -> None:
        self._forget(self)
        error: Exception
        if not isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            error = LaneClosed(f"channel closed: {reason!r}")
        elif reason.reply_code == 404:
            error = NotFound(reason.reply_text)
        else:
            error = self.refusal(reason.reply_code, reason.reply_text)
        if self._step is not None and not self._step.done():
            self._step.set_exception(error)
        self.fail(error)

    def refusal(self, code: int, text: str) -> Exception:
        """What the operations waiting on the channel fail with when the broker closed it
        for another reason than a missing exchange or queue (404)."""
        return LaneClosed(f"channel closed by the broker: {code} {text}")

    def fail(self, error: Exception) -> None:
        """Fail every operation waiting on the channel with ``error``."""
        raise NotImplementedError

    def settle(self, tag: int, *, ack: bool, requeue: bool = True) -> None:
        """Ack or nack delivery ``tag`` of this channel."""
        if not self.channel.is_open:
            raise LaneClosed("the channel that delivered it closed")
        try:
            if ack:
                self.channel.basic_ack(tag)
            else:
                self.channel.basic_nack(tag, requeue=requeue)
        except _GONE as exc:
            raise LaneClosed(f"settle on a closed channel: {exc!r}") from exc


class _Publishing(_Channel):
    def __init__(self, channel: Any, forget: Callable[[Any], None]) -> None:
        super().__init__(channel, forget)
        self._loop = asyncio.get_running_loop()
        self._published = 0
        #: The confirms awaited, by delivery tag (ascending): the future, the message id.
        self._pending: dict[int, tuple[asyncio.Future[None], str | None]] = {}
        channel.add_on_return_callback(self._on_return)

    @classmethod
    async def open(cls, connection: Any, forget: Callable[[Any], None]) -> _Publishing:
        publishing = cls(await cls._open_channel(connection), forget)

        def select(done: Callable[[Any], None]) -> None:
            publishing.channel.confirm_delivery(publishing._on_confirm, done)

        await publishing._wait(select)
        return publishing

    def refusal(self, code: int, text: str) -> Exception:
        # Access refused (403), a property the broker does not take (406): a publish
        # made again would be refused again.
        return Refused(f"{code} {text}")

    async def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any) -> None:
        try:
            self.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except _GONE as exc:
            raise LaneClosed(f"publish on a closed channel: {exc!r}") from exc
        self._published += 1
        confirmed: asyncio.Future[None] = self._loop.create_future()
        self._pending[self._published] = (confirmed, properties.message_id)
        await confirmed

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        if method.multiple:
            tags = [pending for pending in self._pending if pending <= tag]
        else:
            tags = [tag]
        nacked = isinstance(method, spec.Basic.Nack)
        for each in tags:
            entry = self._pending.pop(each, None)
            if entry is None or entry[0].done():
                continue
            if nacked:
                entry[0].set_exception(Refused("the broker refused the message (nack)"))
            else:
                entry[0].set_result(None)

    def _on_return(self, _: Any, method: Any, properties: Any, __: bytes) -> None:
        # A return comes before the confirm of the same publish; it names no delivery
        # tag, so the message id tells which publish it was (the oldest one waiting).
        for confirmed, message_id in self._pending.values():
            if message_id == properties.message_id and not confirmed.done():
                confirmed.set_exception(Unroutable(f"{method.reply_code} {method.reply_text}"))
                return

    def fail(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for confirmed, _ in pending.values():
            if not confirmed.done():
                confirmed.set_exception(error)


class _Getting(_Channel):
    def __init__(self, channel: Any, forget: Callable[[Any], None]) -> None:
        super().__init__(channel, forget)
        # The broker answers one basic.get at a time per channel, and pika lets one wait.
        self._turn = asyncio.Lock()
        self._waiter: asyncio.Future[LaneMessage | None] | None = None
        channel.add_callback(self._on_empty, [spec.Basic.GetEmpty], one_shot=False)

    @classmethod
    async def open(cls, connection: Any, forget: Callable[[Any], None]) -> _Getting:
        return cls(await cls._open_channel(connection), forget)

    async def get(self, queue: str) -> LaneMessage | None:
        async with self._turn:
            waiter: asyncio.Future[LaneMessage | None] = asyncio.get_running_loop().create_future()
            try:
                self.channel.basic_get(queue, self._on_message, auto_ack=False)
            except _GONE as exc:
                raise LaneClosed(f"get on a closed channel: {exc!r}") from exc
            self._waiter = waiter
            try:
                return await waiter
            except asyncio.CancelledError:
                # Its answer may still come: the channel goes, and the message with it
                # back to its queue.
                self._close()
                raise
            finally:
                self._waiter = None

    def _on_message(self, _: Any, method: Any, properties: Any, body: bytes) -> None:
        pulled = LaneMessage(self, method.delivery_tag, body, properties)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(pulled)

    def _on_empty(self, _: Any) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _close(self) -> None:
        self._forget(self)
        with contextlib.suppress(pika.exceptions.ChannelWrongStateError):
            self.channel.close()

    def fail(self, error: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class Consuming(_Channel):
    """A channel with one consumer on it: its prefetch is the consumer's."""

    def __init__(self, channel: Any, lost: Callable[[], None]) -> None:
        super().__init__(channel, lambda _: None)
        self._lost = lost
        self.tag: str | None = None

    @classmethod
    async def open(
        cls,
        connection: Any,
        queue: str,
        prefetch: int,
        received: Callable[[LaneMessage], None],
        lost: Callable[[], None],
    ) -> Consuming:
        consuming = cls(await cls._open_channel(connection), lost)
        channel = consuming.channel

        def on_message(_: Any, method: Any, properties: Any, body: bytes) -> None:
            received(LaneMessage(consuming, method.delivery_tag, body, properties))

        def consume(done: Callable[[Any], None]) -> None:
            consuming.tag = channel.basic_consume(queue, on_message, auto_ack=False, callback=done)

        def qos(done: Callable[[Any], None]) -> None:
            channel.basic_qos(prefetch_count=prefetch, callback=done)

        try:
            await consuming._wait(qos)
            await consuming._wait(consume)
        except BaseException:
            with contextlib.suppress(*_GONE):
                channel.close()  # no consumer came of it
            raise
        return consuming

    async def cancel(self) -> None:
        """Ask the broker for no more messages (those in hand stay to be settled)."""
        tag = self.tag
        if tag is None or not self.channel.is_open:
            return

        def cancel(done: Callable[[Any], None]) -> None:
            self.channel.basic_cancel(tag, callback=done)

        with contextlib.suppress(LaneClosed, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._wait(cancel)

    async def close(self) -> None:
        """Close the channel (what it delivered and is unsettled goes back)."""
        if self.channel.is_open:
            await _close(self.channel)

    def fail(self, error: Exception) -> None:
        self._lost()


class LaneMessage:
    """A message from ``basic.get`` or a consumer, settled on the channel that delivered
    it. Once that channel is gone, settling raises :class:`LaneClosed`: the broker has
    put the message back already."""

    __slots__ = ("_channel", "_tag", "body", "headers", "message_id")

    def __init__(self, channel: _Channel, tag: int, body: bytes, properties: Any) -> None:
        self._channel = channel
        self._tag = tag
        self.body = body
        self.headers: Mapping[str, Any] = properties.headers or {}
        self.message_id: str | None = properties.message_id

    async def ack(self) -> None:
        self._channel.settle(self._tag, ack=True)

    async def nack(self, *, requeue: bool = True) -> None:
        self._channel.settle(self._tag, ack=False, requeue=requeue)
