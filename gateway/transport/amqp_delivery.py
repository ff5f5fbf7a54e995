"""Deliveries and push subscriptions of :class:`~gateway.transport.amqp.AmqpTransport`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import aiormq
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from gateway.core.clock import Clock
from gateway.transport import amqp_wire
from gateway.transport.amqp_publish import TRANSIENT_ERRORS, ConfirmedPublisher
from gateway.transport.base import DeadLetterReason, Delivery, Direction, Handler, run_handler

log = structlog.get_logger(__name__)


class AmqpDelivery(Delivery):
    def __init__(
        self,
        incoming: amqp_wire.Incoming,
        direction: Direction,
        participant: str,
        publisher: ConfirmedPublisher,
        retry_delays: tuple[timedelta, ...],
    ) -> None:
        super().__init__(
            amqp_wire.from_amqp(incoming),
            delivery_count=amqp_wire.delivery_count(incoming),
            retries=amqp_wire.retries(incoming),
            retry_delays=retry_delays,
        )
        self._incoming = incoming
        self._direction = direction
        self._participant = participant
        self._publisher = publisher

    async def _ack(self) -> None:
        await self._settle(self._incoming.ack)

    async def _requeue(self) -> None:
        await self._settle(lambda: self._incoming.nack(requeue=True))

    # Dead letters and retries are published (confirmed) before the ack: a crash
    # in between duplicates the message, it never loses it.

    async def _dead_letter(self, reason: DeadLetterReason, detail: str) -> None:
        await self._publisher.dead_letter(
            self._direction, self._participant, self.message, reason, detail
        )
        await self._settle(self._incoming.ack)

    async def _retry(self, attempt: int, delay: timedelta) -> None:
        await self._publisher.retry(self._direction, self._participant, self.message, attempt)
        await self._settle(self._incoming.ack)

    async def expire(self) -> None:
        self._claim()
        await self._dead_letter(DeadLetterReason.EXPIRED, "end of life passed")

    async def _settle(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except (*TRANSIENT_ERRORS, aiormq.exceptions.AMQPError):
            # The channel that delivered it is gone; the broker redelivers it.
            log.warning("transport_settle_lost", message_id=self.message.message_id)


async def open_delivery(
    incoming: amqp_wire.Incoming,
    direction: Direction,
    participant: str,
    publisher: ConfirmedPublisher,
    retry_delays: tuple[timedelta, ...],
    clock: Clock,
) -> AmqpDelivery | None:
    """The delivery for ``incoming``, or ``None`` if it is past its end of life.

    The broker expires messages waiting in a queue; this catches the rest (one
    that came back from a retry queue, or arrived just before its end).
    """
    delivery = AmqpDelivery(incoming, direction, participant, publisher, retry_delays)
    expires_at = delivery.message.expires_at
    if expires_at is not None and expires_at <= clock.now():
        await delivery.expire()
        return None
    return delivery


Opener = Callable[[AbstractIncomingMessage], Awaitable[AmqpDelivery | None]]


class AmqpSubscription:
    """One consumer on its own channel (the channel's prefetch is the consumer's)."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: Handler,
        opener: Opener,
        on_stop: Callable[[AmqpSubscription], None],
    ) -> None:
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._open = opener
        self._on_stop = on_stop
        self._tasks: set[asyncio.Task[None]] = set()
        self._tag: str | None = None
        self._stopped = False

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        if self._stopped:
            return  # left unacked: the broker takes it back when the channel closes
        # aio-pika calls this in a task of its own: the handler runs in it, kept for
        # drain(), rather than in yet another task a turn of the event loop later.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(incoming)
        finally:
            self._tasks.discard(task)

    async def _handle(self, incoming: AbstractIncomingMessage) -> None:
        delivery = await self._open(incoming)
        if delivery is not None:
            await run_handler(self._handler, delivery)

    async def stop(self) -> None:
        """Ask the broker for no more messages."""
        self._stopped = True
        self._on_stop(self)
        if self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except (*TRANSIENT_ERRORS, aiormq.exceptions.AMQPError):
                log.warning("transport_cancel_failed", queue=self._queue.name)

    async def drain(self, grace: float | None) -> None:
        """Wait for running handlers (cancelling them after ``grace`` s), then close."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._channel.close()

    async def cancel(self) -> None:
        await self.stop()
        await self.drain(None)
