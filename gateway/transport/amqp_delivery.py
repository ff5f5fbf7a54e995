"""Deliveries and push subscriptions of :class:`~gateway.transport.amqp.AmqpTransport`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from gateway.core import backoff
from gateway.core.clock import Clock
from gateway.transport import amqp_wire
from gateway.transport.amqp_lane import AmqpLane, Consuming, LaneMessage
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
        except TRANSIENT_ERRORS:
            # The channel that delivered it is gone (the lane raises LaneClosed); the
            # broker redelivers it.
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


Opener = Callable[[LaneMessage], Awaitable[AmqpDelivery | None]]

#: The wait before consuming again after a lost channel: 50 ms, doubling up to 2 s.
RESUBSCRIBE_BACKOFF = backoff.exponential(0.05, 2.0)


class AmqpSubscription:
    """One consumer on a channel of the lane's own (:mod:`gateway.transport.amqp_lane`),
    consuming again whenever that channel goes (a lost connection, a broker's close).
    Each message is handled in a task of its own, kept for :meth:`drain`."""

    def __init__(
        self,
        lane: AmqpLane,
        queue: str,
        prefetch: int,
        handler: Handler,
        opener: Opener,
        on_stop: Callable[[AmqpSubscription], None],
    ) -> None:
        self._lane = lane
        self._queue = queue
        self._prefetch = prefetch
        self._handler = handler
        self._open = opener
        self._on_stop = on_stop
        self._tasks: set[asyncio.Task[None]] = set()
        self._consuming: Consuming | None = None
        self._lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        """Consume now (raises if the broker cannot be reached), and again after a loss."""
        await self._consume()
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep())

    async def _consume(self) -> None:
        self._lost = lost = asyncio.Event()
        self._consuming = await self._lane.consume(
            self._queue, self._prefetch, self._received, lost.set
        )

    async def _keep(self) -> None:
        while not self._stopped:
            await self._lost.wait()
            failures = 0
            while not self._stopped:
                try:
                    await self._consume()
                except Exception as exc:  # a keeper that died would consume no more
                    log.warning("transport_resubscribe_failed", queue=self._queue, error=repr(exc))
                    failures += 1
                    await asyncio.sleep(backoff.delay(RESUBSCRIBE_BACKOFF, failures))
                    continue
                log.warning("transport_resubscribed", queue=self._queue)
                break

    def _received(self, incoming: LaneMessage) -> None:
        if self._stopped:
            return  # left unacked: the broker takes it back when the channel closes
        task = asyncio.get_running_loop().create_task(self._handle(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, incoming: LaneMessage) -> None:
        try:
            delivery = await self._open(incoming)
            if delivery is not None:
                await run_handler(self._handler, delivery)
        except Exception:
            # Unsettled: the broker hands it out again once its channel goes.
            log.exception("transport_delivery_failed", message_id=incoming.message_id)

    async def stop(self) -> None:
        """Ask the broker for no more messages."""
        self._stopped = True
        self._on_stop(self)
        if self._keeper is not None:
            self._keeper.cancel()
        if self._consuming is not None:
            await self._consuming.cancel()

    async def drain(self, grace: float | None) -> None:
        """Wait for running handlers (cancelling them after ``grace`` s), then close."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._consuming is not None:
            await self._consuming.close()

    async def cancel(self) -> None:
        await self.stop()
        await self.drain(None)
