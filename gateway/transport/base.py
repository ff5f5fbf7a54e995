"""The ``Transport`` protocol: how messages move between the router and participants.

Two directions, each with one queue per participant: requests are routed by the
provider's mnemonic, responses by the consumer's. Delivery is at-least-once:
consumers settle every delivery explicitly, and the journal's unique MessageID
turns a duplicate into a no-op. Nothing is dropped silently: a message that
cannot be delivered (rejected, out of deliveries or retries, past its end of
life) lands in its queue's dead-letter queue with a :class:`DeadLetterReason`,
where ops tools list and replay it.

:class:`~gateway.transport.memory.MemoryTransport` and
:class:`~gateway.transport.amqp.AmqpTransport` implement this with the same
observable behaviour; ``tests/integration/test_transport.py`` runs against both.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import structlog

from gateway.core import backoff
from gateway.transport.errors import DeliveryNotHeld

log = structlog.get_logger(__name__)


class Direction(StrEnum):
    REQUESTS = "requests"
    RESPONSES = "responses"


#: Header names with this prefix belong to the transport and the broker.
RESERVED_HEADER_PREFIX = "x-"


#: Headers the router sets on every message it publishes (adapters and ops tools read them).
HEADER_SENDER, HEADER_TYPE, HEADER_KIND = "sender", "message-type", "kind"
#: The request id (:mod:`gateway.request_id`) a message was published under, if any.
HEADER_REQUEST_ID = "request-id"


@dataclass(frozen=True, slots=True)
class Message:
    """What travels on the bus: opaque bytes plus a few string headers."""

    message_id: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: End of life (aware); past it the message is dead-lettered as ``expired``.
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.message_id:
            raise ValueError("message_id must not be empty")
        if self.expires_at is not None and self.expires_at.utcoffset() is None:
            raise ValueError("expires_at must be timezone-aware")
        reserved = [name for name in self.headers if name.startswith(RESERVED_HEADER_PREFIX)]
        if reserved:
            raise ValueError(f"header names starting with 'x-' are reserved: {reserved}")


class DeadLetterReason(StrEnum):
    #: The consumer refused it (``reject``, or ``nack(requeue=False)``).
    REJECTED = "rejected"
    #: Its end of life passed before it was settled.
    EXPIRED = "expired"
    #: Delivered ``QueuePolicy.max_deliveries`` times without an ack.
    DELIVERY_LIMIT = "delivery_limit"
    #: ``retry_later`` was called after the last retry step.
    RETRIES_EXHAUSTED = "retries_exhausted"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: DeadLetterReason
    #: A person-readable explanation (the reject reason, the limit reached).
    detail: str = ""


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """One participant queue as the transport sees it now (for operators)."""

    #: Messages waiting in the main queue.
    ready: int
    #: Handed out and not yet settled; ``None`` where the transport cannot tell.
    unacked: int | None
    #: Consumers attached to the main queue; ``None`` where the transport cannot tell.
    consumers: int | None
    #: Messages in its dead-letter queue.
    dead_letters: int


@dataclass(frozen=True, slots=True)
class DeadLetterEvent:
    """A message has just landed in the dead-letter queue of ``participant``/``direction``.

    What :meth:`Transport.watch_dead_letters` hands its handler. The dead letter
    itself stays in its queue (listable, replayable); the event only tells.
    """

    direction: Direction
    participant: str
    letter: DeadLetter


class Delivery(ABC):
    """One delivery of a message to a consumer, to be settled exactly once.

    Settling twice, or after a pulled delivery's visibility timeout sent it back,
    raises :class:`DeliveryNotHeld`.
    """

    def __init__(
        self,
        message: Message,
        *,
        delivery_count: int,
        retries: int,
        retry_delays: tuple[timedelta, ...],
    ) -> None:
        self.message = message
        #: 1 on the first delivery, +1 on each redelivery (nack, lapse, lost connection).
        self.delivery_count = delivery_count
        #: How many times ``retry_later`` has already been taken for this message.
        self.retries = retries
        self._retry_delays = retry_delays
        self._settled = False
        self._on_settle: list[Callable[[], None]] = []

    @property
    def settled(self) -> bool:
        return self._settled

    async def ack(self) -> None:
        """Done: remove the message (call after the journal write)."""
        self._claim()
        await self._ack()

    async def nack(self, requeue: bool = True) -> None:
        """Failed: put it back (counts towards the delivery limit), or dead-letter it."""
        self._claim()
        if requeue:
            await self._requeue()
        else:
            await self._dead_letter(DeadLetterReason.REJECTED, "nack without requeue")

    async def reject(self, reason: str) -> None:
        """Never deliverable (bad content, unknown type): dead-letter it now, with why."""
        self._claim()
        await self._dead_letter(DeadLetterReason.REJECTED, reason)

    async def retry_later(self) -> timedelta | None:
        """Bring the message back after the next retry delay, and return that delay.

        Past the last step of ``QueuePolicy.retry_delays`` the message is
        dead-lettered as ``retries_exhausted`` and ``None`` is returned.
        """
        self._claim()
        attempt = self.retries + 1
        if attempt > len(self._retry_delays):
            await self._dead_letter(
                DeadLetterReason.RETRIES_EXHAUSTED, f"gave up after {self.retries} retries"
            )
            return None
        delay = self._retry_delays[attempt - 1]
        await self._retry(attempt, delay)
        return delay

    async def lapse(self) -> None:
        """Give an unsettled delivery back to its queue (visibility timeout, shutdown)."""
        if self._settled:
            return
        self._claim()
        await self._requeue()

    def on_settle(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when this delivery is settled in any way."""
        self._on_settle.append(callback)

    def _claim(self) -> None:
        if self._settled:
            raise DeliveryNotHeld(
                "delivery already settled or returned to its queue",
                message_id=self.message.message_id,
            )
        self._settled = True
        for callback in self._on_settle:
            callback()

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _requeue(self) -> None: ...

    @abstractmethod
    async def _dead_letter(self, reason: DeadLetterReason, detail: str) -> None: ...

    @abstractmethod
    async def _retry(self, attempt: int, delay: timedelta) -> None: ...


Handler = Callable[[Delivery], Awaitable[None]]

#: Records one dead-letter event; raising means "not recorded, offer it again later".
DeadLetterHandler = Callable[[DeadLetterEvent], Awaitable[None]]


#: 0.1 s after a handler's first failure, doubling up to 5 s.
REDELIVERY_BACKOFF = backoff.exponential(0.1, cap=5.0)


def redelivery_pause(failures: int) -> float:
    """Seconds before a dead-letter event whose handler failed ``failures`` times comes back."""
    return backoff.delay(REDELIVERY_BACKOFF, failures)


async def run_handler(handler: Handler, delivery: Delivery) -> None:
    """Call a push consumer's handler; whatever it leaves unsettled goes back.

    An exception means "failed, try again" (nack with requeue, which counts
    towards the delivery limit). Returning without settling is a handler bug
    and is treated the same way, loudly, rather than acked by guesswork.
    """
    bound = log.bind(message_id=delivery.message.message_id)
    try:
        await handler(delivery)
    except asyncio.CancelledError:
        await delivery.lapse()
        raise
    except Exception:
        bound.exception("transport_handler_failed")
        await delivery.lapse()
    else:
        if not delivery.settled:
            bound.warning("transport_handler_returned_unsettled")
            await delivery.lapse()


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop receiving; waits for the handler calls already running."""
        ...


class Transport(Protocol):
    """The message transport the router, adapters and ops tools see."""

    async def declare(self, participants: Iterable[str]) -> None:
        """Create both directions' queues for these participants (idempotent).

        Queue operations other than ``publish`` need the participant declared
        through this transport first.
        """
        ...

    async def publish(self, direction: Direction, participant: str, message: Message) -> None:
        """Store the message durably in the participant's queue, or raise.

        Returns once the broker confirmed it. Raises
        :class:`~gateway.transport.errors.QueueNotDeclared` if the participant has
        no queue, :class:`~gateway.transport.errors.TransportUnavailable` if the
        broker stays unreachable past the publish timeout.
        """
        ...

    async def consume(
        self,
        direction: Direction,
        participant: str,
        handler: Handler,
        *,
        prefetch: int | None = None,
    ) -> Subscription:
        """Push each message to ``handler``, at most ``prefetch`` unsettled at once."""
        ...

    async def get(self, direction: Direction, participant: str) -> Delivery | None:
        """Pull one message, or ``None`` if the queue is empty.

        The message stays invisible to others until settled; if it is not settled
        within ``QueuePolicy.visibility_timeout`` it goes back to the queue as a
        failed delivery.
        """
        ...

    async def dead_letters(
        self, direction: Direction, participant: str, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Peek at up to ``limit`` dead letters, oldest first, leaving them in place."""
        ...

    async def replay(
        self,
        direction: Direction,
        participant: str,
        message_ids: Collection[str] | None = None,
    ) -> int:
        """Move dead letters (all, or those with these ids) back to the main queue.

        Replayed messages start afresh (delivery count and retries reset) but keep
        their end of life: an expired message replayed expires again.
        Returns how many were moved.
        """
        ...

    async def purge(
        self, direction: Direction, participant: str, message_ids: Collection[str]
    ) -> int:
        """Drop the dead letters with these ids for good (every copy of each); the others
        stay where they are. Returns how many were dropped."""
        ...

    async def dead_letter_count(self, direction: Direction, participant: str) -> int:
        """Messages in the participant's dead-letter queue."""
        ...

    async def watch_dead_letters(self, handler: DeadLetterHandler) -> Subscription:
        """Call ``handler`` once for every message dead-lettered from now on, any queue.

        Every reason counts: rejected by a consumer, expired, delivery limit,
        retries exhausted, whether the transport or the broker dead-lettered it.
        Events are at-least-once and survive the watcher being away: from the
        first watch on, the transport keeps them (on RabbitMQ in a durable queue)
        until a handler call returns. So the handler must be idempotent; when it
        raises, the event is offered again after a pause (raise only for a
        passing failure, such as the journal being unreachable). Several watchers
        share the events: each goes to one of them.
        """
        ...

    async def depth(self, direction: Direction, participant: str) -> int:
        """Messages ready in the main queue (not counting unsettled or retrying ones)."""
        ...

    async def counts(self, direction: Direction, participant: str) -> QueueCounts:
        """The queue's figures now: ready, unacked, consumers, dead letters."""
        ...

    async def close(self, grace: float = 30.0) -> None:
        """Stop consuming, wait up to ``grace`` s for running handlers, disconnect."""
        ...
