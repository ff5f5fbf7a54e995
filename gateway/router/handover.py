"""Responses handed over to a subscriber in this process, without the broker's round trip.

A response to a portal whose replies this process's aggregator consumes
(:meth:`Router.serve_locally <gateway.router.router.Router.serve_locally>`) would be
published to ``responses.<portal>`` only for the broker to push it back to this same
process. Instead, once the response is journaled ACCEPTED, the router hands it to
the subscriber as a :class:`HandedOver` delivery, with the reply read from the tree
it has just validated (no second parse). That spares each reply a publish with its
confirm, a push and an ack: measured on 2 cores, RabbitMQ's CPU per three-part
fan-out went from 5.1 to 2.5 ms (``benchmarks/chain.py``), and single parts and
fan-outs alike answer 13 % sooner (``benchmarks/chains.py``: 0.87 of the time).

Nothing is lost on the way, because the journal still decides:

* the subscriber takes the reply as it takes a pushed one (journaled ACKED with its
  service-request save, in one write) and then acks the handover, which does nothing;
* whatever else befalls the handover (the take failed, or was cancelled as the
  process stops; a redelivery limit does not apply) publishes the response to its
  queue, where the broker's usual path takes it over;
* a process that dies between journaling the response and the take leaves it
  ACCEPTED: the relay (:mod:`gateway.router.outbox`) publishes it after
  ``relay_after_s``.

A copy that reaches the subscriber after the reply was taken (the relay was quicker
than a slow take, say) finds it ACKED in the journal and is dropped, as any
redundant copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from gateway.transport.base import DeadLetterReason, Delivery, Direction, Message, Transport

if TYPE_CHECKING:  # pushed.py tells a handover from a push by its class
    from gateway.router.pushed import PushedReply

log = structlog.get_logger(__name__)

#: The reason journaled for the move to QUEUED of a response handed over.
HANDED_OVER = "handed over in process"

#: A subscriber's intake of handed-over responses: takes it from here, never raises;
#: returns for how many seconds at most the response's answer may wait for its take
#: (:mod:`gateway.router.holds`; 0: not held).
HandOver = Callable[["HandedOver", "PushedReply"], float]


class HandedOver(Delivery):
    """A response handed to a subscriber in this process: an ack settles it; anything
    else publishes it to ``responses.<participant>`` for the broker's path."""

    def __init__(self, message: Message, transport: Transport, participant: str) -> None:
        super().__init__(message, delivery_count=1, retries=0, retry_delays=())
        self._transport = transport
        self._participant = participant
        #: Set when the response's answer may go (:mod:`gateway.router.holds`).
        self.answerable = asyncio.Event()

    async def _ack(self) -> None:
        pass  # the take journaled it: nothing is queued anywhere

    async def _requeue(self) -> None:
        await self._to_queue("given back")

    async def _dead_letter(self, reason: DeadLetterReason, detail: str) -> None:
        # The broker's path decides, with its redelivery limit and dead-letter queue.
        await self._to_queue(f"{reason}: {detail}")

    async def _retry(self, attempt: int, delay: timedelta) -> None:
        await self._to_queue(f"retry {attempt}")

    async def _to_queue(self, why: str) -> None:
        log.info(
            "handover_to_queue",
            message_id=self.message.message_id,
            queue=f"{Direction.RESPONSES}.{self._participant}",
            why=why,
        )
        await self._transport.publish(Direction.RESPONSES, self._participant, self.message)
