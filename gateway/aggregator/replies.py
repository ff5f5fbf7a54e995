"""The aggregator's replies, pushed to it: a subscription on its portal's response queue.

The router publishes each answer to ``responses.<portal>``; :class:`ReplyIntake`
consumes that queue (an AMQP consumer, or a memory-transport subscriber) and, per
delivery:

1. the router journals it DELIVERED (:meth:`Inbox.receive_response`; a redundant copy
   of a reply already delivered is acked there and goes no further);
2. the aggregator applies it to its service request and saves
   (:meth:`~gateway.aggregator.service.Aggregator.apply_reply`);
3. the router journals it ACKED (its request RESPONSE_DELIVERED) and only then acks
   it on the transport (:meth:`Inbox.settle_response`).

A failure anywhere leaves the delivery unsettled, and it goes back to the queue: the
redelivery is applied again, which changes nothing the first application did (the
first outcome of a part stands). A reply that arrives while no gateway runs waits in
the queue for the next one. Nothing wakes, polls or pulls: the broker pushes.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

import structlog
from lxml import etree

from gateway import request_id
from gateway.transport.base import (
    HEADER_REQUEST_ID,
    Delivery,
    Direction,
    Subscription,
    Transport,
)
from gateway.xml import messages as m

log = structlog.get_logger(__name__)

#: Replies applied side by side per subscription (each waits on journal and store
#: round trips; replies to one service request still take turns in the aggregator).
PREFETCH = 8


class Inbox(Protocol):
    """What the intake needs of the router."""

    async def receive_response(
        self, participant: str, delivery: Delivery
    ) -> m.ResponseDelivery | None: ...

    async def settle_response(self, delivery: Delivery) -> None: ...


class Applies(Protocol):
    """What the intake needs of the aggregator."""

    async def apply_reply(self, original: uuid.UUID, response_data: etree._Element) -> bool: ...


class ReplyIntake:
    """The replies to ``participant`` (a portal the aggregator serves), applied as they come."""

    def __init__(
        self,
        aggregator: Applies,
        inbox: Inbox,
        transport: Transport,
        participant: str,
        *,
        prefetch: int = PREFETCH,
    ) -> None:
        self.aggregator = aggregator
        self.inbox = inbox
        self.transport = transport
        self.participant = participant
        self.prefetch = prefetch

    async def handle(self, delivery: Delivery) -> bool:
        """Take one delivery from ``responses.<participant>``: True when it changed a
        service request. Raises (the delivery unsettled) when it could not be stored."""
        with request_id.bound(delivery.message.headers.get(HEADER_REQUEST_ID)):
            reply = await self.inbox.receive_response(self.participant, delivery)
            if reply is None:
                return False  # a redundant copy, settled by the router
            applied = await self.aggregator.apply_reply(
                reply.original_message_id, reply.response_data
            )
            await self.inbox.settle_response(delivery)
            return applied

    async def _consume(self, delivery: Delivery) -> None:
        await self.handle(delivery)

    async def subscribe(self) -> Subscription:
        """Consume the queue from now until the subscription is cancelled."""
        return await self.transport.consume(
            Direction.RESPONSES, self.participant, self._consume, prefetch=self.prefetch
        )

    async def drain(self, *, workers: int = PREFETCH) -> int:
        """Take what is in the queue now, ``workers`` at a time, through :meth:`handle`;
        how many replies changed a service request. The same intake as the
        subscription, driven by the caller: deterministic, for tests and one-shot tools.
        A worker whose delivery failed gives it back to the queue and stops; the others
        go on, and the first error is raised once every worker has stopped."""
        applied = 0

        async def worker() -> None:
            nonlocal applied
            while delivery := await self.transport.get(Direction.RESPONSES, self.participant):
                try:
                    if await self.handle(delivery):
                        applied += 1
                except BaseException:
                    await delivery.lapse()  # back to its queue (unless settled)
                    raise

        # Not a TaskGroup: one worker failing must not cancel the others halfway
        # through a reply.
        outcomes = await asyncio.gather(*(worker() for _ in range(workers)), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return applied
