"""The aggregator's replies, pushed to it: a subscription on its portal's response queue.

The router publishes each answer to ``responses.<portal>``; :class:`ReplyIntake`
consumes that queue (an AMQP consumer, or a memory-transport subscriber) and, per
delivery:

1. the router reads the reply from the delivery, without the journal
   (:meth:`Inbox.read_reply`);
2. the aggregator applies it to its service request in memory
   (:meth:`~gateway.aggregator.service.Aggregator.apply_reply`) and hands the new
   state back to the router (:meth:`Inbox.take_reply`), which journals the reply
   ACKED (its request RESPONSE_DELIVERED) and saves the service request in one write
   (the save a compare-and-set: on a conflict nothing is written, and the aggregator
   re-reads, applies again and hands it back again); a reply that changes nothing is
   only journaled; replies that waited for their turn at one service request are
   saved together, in the first one's write, the others journaled in it too
   (:mod:`gateway.aggregator.reply_turns`);
3. only after that write the router acks the delivery on the transport.

A failure before the write leaves the delivery unsettled, and it goes back to the
queue to be applied again. A copy that comes back after the write (the process died
before the transport's ack, or the reply was queued twice) finds the reply ACKED in
the journal: it changes nothing, and the router acks and drops it. A reply that
arrives while no gateway runs waits in the queue for the next one. Nothing wakes,
polls or pulls: the broker pushes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import structlog
from lxml import etree

from gateway import request_id
from gateway.aggregator.service import TakeReply
from gateway.router.handover import HandedOver, HandOver
from gateway.router.pushed import PushedReply
from gateway.store.replies import ReplySave, ReplyTaken
from gateway.transport.base import (
    HEADER_REQUEST_ID,
    Delivery,
    Direction,
    Subscription,
    Transport,
    run_handler,
)

log = structlog.get_logger(__name__)

#: Replies applied side by side per subscription (each waits on journal and store
#: round trips; replies to one service request still take turns in the aggregator:
#: :mod:`gateway.aggregator.reply_turns`).
PREFETCH = 8


class Inbox(Protocol):
    """What the intake needs of the router."""

    def read_reply(self, delivery: Delivery) -> PushedReply: ...

    async def take_reply(
        self,
        participant: str,
        delivery: Delivery,
        save: ReplySave | None,
        along: Sequence[Delivery] = (),
    ) -> ReplyTaken | None: ...

    def serve_locally(self, participant: str, hand: HandOver | None) -> None: ...


class Applies(Protocol):
    """What the intake needs of the aggregator."""

    @property
    def reply_gather(self) -> timedelta:
        """How long a turn waits for a service request's other replies."""
        ...

    async def apply_reply(
        self, original: uuid.UUID, response_data: etree._Element, take: TakeReply
    ) -> bool: ...


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
        self._handed: set[asyncio.Task[None]] = set()

    async def handle(self, delivery: Delivery) -> bool:
        """Take one delivery from ``responses.<participant>``: True when it changed a
        service request. Raises (the delivery unsettled) when it could not be stored."""
        with request_id.bound(delivery.message.headers.get(HEADER_REQUEST_ID)):
            return await self._apply(delivery, self.inbox.read_reply(delivery))

    async def _apply(self, delivery: Delivery, reply: PushedReply) -> bool:
        return await self.aggregator.apply_reply(
            reply.original_message_id, reply.response_data, _Take(self, delivery)
        )

    async def _consume(self, delivery: Delivery) -> None:
        await self.handle(delivery)

    def hand(self, delivery: HandedOver, reply: PushedReply) -> float:
        """Take a reply the router hands over in this process (:mod:`gateway.router.handover`)
        in a task of its own; what the take leaves unsettled goes to the broker's queue.
        Its answer may wait for the take as long as its turn may gather
        (:mod:`gateway.router.holds`)."""

        async def apply(_: Delivery) -> None:
            await self._apply(delivery, reply)

        async def take() -> None:  # under the request id bound where it was handed over
            try:
                await run_handler(apply, delivery)
            except BaseException as exc:
                delivery.answerable.set()  # its answer need wait no more
                if not isinstance(exc, Exception):
                    raise
                # Not even queued: still ACCEPTED, for the relay.
                log.exception("handover_lost_to_relay", message_id=delivery.message.message_id)

        task = asyncio.create_task(take(), name=f"handover {delivery.message.message_id}")
        self._handed.add(task)
        task.add_done_callback(self._handed.discard)
        return self.aggregator.reply_gather.total_seconds()

    async def subscribe(self) -> Subscription:
        """Consume the queue, and take the replies the router hands over, from now until
        the subscription is cancelled."""
        queue = await self.transport.consume(
            Direction.RESPONSES, self.participant, self._consume, prefetch=self.prefetch
        )
        self.inbox.serve_locally(self.participant, self.hand)
        return _Both(self, queue)

    async def drain(self, *, workers: int = PREFETCH) -> int:
        """Take what is in the queue now, ``workers`` at a time, through :meth:`handle`;
        how many replies changed a service request. The same intake as the
        subscription, driven by the caller: deterministic, for tests and one-shot tools.
        A worker whose delivery failed stops; the others go on. The failed deliveries
        go back to the queue once every worker has stopped (not at once, where another
        worker would take them again), and the first error is raised then."""
        applied = 0
        failed: list[Delivery] = []

        async def worker() -> None:
            nonlocal applied
            while delivery := await self.transport.get(Direction.RESPONSES, self.participant):
                try:
                    if await self.handle(delivery):
                        applied += 1
                except BaseException:
                    failed.append(delivery)  # back to its queue (unless settled) at the end
                    raise

        # Not a TaskGroup: one worker failing must not cancel the others halfway
        # through a reply.
        try:
            outcomes = await asyncio.gather(
                *(worker() for _ in range(workers)), return_exceptions=True
            )
        finally:
            for delivery in failed:
                await delivery.lapse()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return applied


@dataclass(frozen=True, eq=False)
class _Take:
    """A delivery's :class:`TakeReply`: the router's take, with the deliveries of the
    other takes of this intake taken along."""

    intake: ReplyIntake
    delivery: Delivery

    @property
    def response_id(self) -> str:
        return self.delivery.message.message_id

    async def __call__(
        self, save: ReplySave | None, along: Sequence[TakeReply] = ()
    ) -> ReplyTaken | None:
        others = [t.delivery for t in along if isinstance(t, _Take) and t.intake is self.intake]
        if save is None:
            self.answer()  # journaled only: no request's outcome to wait for
        intake = self.intake
        return await intake.inbox.take_reply(intake.participant, self.delivery, save, others)

    def answer(self) -> None:
        if isinstance(self.delivery, HandedOver):
            self.delivery.answerable.set()


class _Both:
    """The queue's subscription and the handovers: cancelled, the router hands over no
    more, and the takes under way finish (as a transport subscription's handlers do)."""

    def __init__(self, intake: ReplyIntake, queue: Subscription) -> None:
        self._intake = intake
        self._queue = queue

    async def cancel(self) -> None:
        intake = self._intake
        intake.inbox.serve_locally(intake.participant, None)
        try:
            await self._queue.cancel()
        finally:
            await asyncio.gather(*intake._handed, return_exceptions=True)
