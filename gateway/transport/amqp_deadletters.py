"""Watching dead letters on RabbitMQ: one consumer of ``smevbus.deadletter.events``.

The broker copies every dead letter into that queue (see
:mod:`gateway.transport.topology`). The watcher takes the copies one at a time, in
order, hands each to the handler as a :class:`~gateway.transport.base.DeadLetterEvent`
and acks it only after the handler returned: an event is never acked before it is
recorded. A failing handler is called again after a pause (:func:`redelivery_pause`);
a watcher that stops or dies leaves its unacked copies to the broker, which gives
them to the next watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiormq
import structlog
from aio_pika import ExchangeType
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from gateway.transport import amqp_wire
from gateway.transport.amqp_publish import TRANSIENT_ERRORS
from gateway.transport.base import DeadLetterEvent, DeadLetterHandler, redelivery_pause
from gateway.transport.topology import (
    DEAD_LETTER_EVENTS_QUEUE,
    DEAD_LETTER_EXCHANGE,
    dead_letter_events_queue_arguments,
)

log = structlog.get_logger(__name__)


async def declare_events_queue(channel: AbstractChannel) -> AbstractQueue:
    return await channel.declare_queue(
        DEAD_LETTER_EVENTS_QUEUE, durable=True, arguments=dead_letter_events_queue_arguments()
    )


async def bind_dead_letter_events(channel: AbstractChannel, keys: Iterable[str]) -> None:
    """Have the dead-letter exchange copy what it routes with ``keys`` to the events queue.

    Idempotent; the bindings are durable, so the copies keep coming while nobody watches.
    """
    await channel.declare_exchange(DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=True)
    events = await declare_events_queue(channel)
    for key in sorted(keys):
        await events.bind(DEAD_LETTER_EXCHANGE, key)


async def open_watch(
    connection: AbstractRobustConnection,
    prefetch: int,
    handler: DeadLetterHandler,
    on_stop: Callable[[AmqpDeadLetterWatch], None],
) -> AmqpDeadLetterWatch:
    """A started watcher on its own robust channel (it re-consumes after a reconnect)."""
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=prefetch)
        watch = AmqpDeadLetterWatch(channel, await declare_events_queue(channel), handler, on_stop)
        await watch.start()
    except BaseException:
        await channel.close()
        raise
    return watch


class AmqpDeadLetterWatch:
    """A :class:`~gateway.transport.base.Subscription` to dead-letter events."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: DeadLetterHandler,
        on_stop: Callable[[AmqpDeadLetterWatch], None],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._on_stop = on_stop
        #: Copies received and not yet handled; ``None`` wakes the worker to stop.
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._tag: str | None = None

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name=f"watch {self._queue.name}")
        self._tag = await self._queue.consume(self._inbox.put, no_ack=False)

    async def _run(self) -> None:
        while True:
            incoming = await self._inbox.get()
            if incoming is None or self._stopping.is_set():
                return  # what is left unacked goes back when the channel closes
            await self._handle(incoming)

    async def _handle(self, incoming: AbstractIncomingMessage) -> None:
        try:
            event = amqp_wire.dead_letter_event_from_amqp(incoming)
        except ValueError:
            log.error("dead_letter_event_unreadable", routing_key=incoming.routing_key)
            await self._settle(incoming)
            return
        failures = 0
        while True:
            if await self._call(event):
                await self._settle(incoming)
                return
            failures += 1
            try:
                await asyncio.wait_for(self._stopping.wait(), redelivery_pause(failures))
                return  # stopping: leave it unacked for the next watcher
            except TimeoutError:
                pass

    async def _call(self, event: DeadLetterEvent) -> bool:
        try:
            await self._handler(event)
            return True
        except Exception:
            log.exception("dead_letter_handler_failed", message_id=event.letter.message.message_id)
            return False

    async def _settle(self, incoming: AbstractIncomingMessage) -> None:
        try:
            await incoming.ack()
        except (*TRANSIENT_ERRORS, aiormq.exceptions.AMQPError):
            # The channel that delivered it is gone: the broker delivers it again and
            # the handler, being idempotent, records nothing twice.
            log.warning("dead_letter_event_ack_lost", message_id=incoming.message_id)

    async def stop(self, grace: float | None) -> None:
        """Take no more events; let a running handler call finish (up to ``grace`` s)."""
        self._on_stop(self)
        self._stopping.set()
        self._inbox.put_nowait(None)
        if self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except (*TRANSIENT_ERRORS, aiormq.exceptions.AMQPError):
                log.warning("transport_cancel_failed", queue=self._queue.name)
        if self._worker is not None:
            _, pending = await asyncio.wait({self._worker}, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._channel.close()

    async def cancel(self) -> None:
        await self.stop(None)
