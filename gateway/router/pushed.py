"""Responses pushed to a subscriber in this process (the aggregator's reply intake),
taken in one journal write together with what the subscriber stores of them.

:func:`read_reply` reads what a subscriber needs of a delivery (its request's id and
the provider's data) from the body the bus journaled and published, with no journal
read. :class:`PushedReplies` then takes it (:meth:`~gateway.store.base.Journal.take_reply`):
the response journaled ACKED from wherever a copy is handed out from, its request
settled and the subscriber's service-request save, in one write; the delivery is
acked on the transport only after that write. What the journal finds decides the
rest, by :func:`gateway.core.copies.on_copy`: a copy of a response taken already
(redelivered after the write, or queued twice) is acked and dropped, nothing saved.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from lxml import etree

from gateway.core.clock import Clock
from gateway.core.copies import CopyAction, on_copy
from gateway.core.errors import InvalidContent, NotFound
from gateway.core.lifecycle import IllegalTransition
from gateway.ops import metrics
from gateway.ops.metrics import Stage
from gateway.router.handover import HANDED_OVER, HandedOver
from gateway.store.base import Store
from gateway.store.replies import AlongReply, ReplyOutcome, ReplySave, ReplyTaken
from gateway.transport.base import Delivery
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.parse import parse_own

log = structlog.get_logger(__name__)

_DATA = f"{{{SMEV_TYPES}}}SenderProvidedResponseData"
_TO = f"{{{SMEV_TYPES}}}To"


@dataclass(frozen=True, slots=True)
class PushedReply:
    """What a subscriber needs of a pushed response."""

    #: The request it answers (its ``To``, which the bus checked names that request).
    original_message_id: uuid.UUID
    response_data: etree._Element


def read_reply(delivery: Delivery) -> PushedReply:
    """The reply in ``delivery``, read from the body the bus journaled (re-parsed, not
    kept). Raises ``InvalidContent`` for anything but a response."""
    stored = parse_own(delivery.message.body)
    data = stored.find(_DATA)
    to = None if data is None else data.findtext(_TO)
    if data is None or to is None:
        raise InvalidContent("a request was queued as a response")
    try:
        original = uuid.UUID(to.strip())
    except ValueError:
        raise InvalidContent("a stored response lost the id of its request") from None
    return PushedReply(original_message_id=original, response_data=data)


class PushedReplies:
    """Taking pushed responses: the journal's write with the subscriber's save, then the
    transport's ack."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def take(
        self,
        participant: str,
        delivery: Delivery,
        save: ReplySave | None,
        along: Sequence[Delivery] = (),
    ) -> ReplyTaken | None:
        """Journal ``delivery``'s response ACKED with ``save`` (none: only the journal)
        in one write, then ack it on the transport; the responses of ``along`` (other
        deliveries to ``participant``) in the same write where they can be
        (:class:`~gateway.store.replies.AlongReply`), each acked after it too (the
        result's ``along`` names them). The others are left unsettled, for a take of
        their own.

        Returns what was written (``TAKEN``, acked), or a ``CONFLICT``: nothing was
        written (the service request moved on: re-read it, apply the reply again and
        take it again; the delivery is still held). None: the delivery was settled
        here without writing: a redundant copy (acked) or a message the journal does
        not know (dead-lettered). Any failure gives the delivery back to its queue.
        """
        message_id = delivery.message.message_id
        others = [other for other in along if other.message.message_id != message_id]
        distinct = {other.message.message_id: other for other in others}  # copies: once
        try:
            began = time.perf_counter()
            taken = await self.store.take_reply(
                message_id,
                save,
                at=self.clock.now(),
                reason=_reason(delivery),
                queued_reason=_queued_reason(delivery, participant),
                actor="bus",
                along=[
                    AlongReply(id, _reason(other), _queued_reason(other, participant))
                    for id, other in distinct.items()
                ],
            )
            metrics.observe_stage(Stage.DELIVER, time.perf_counter() - began)
        except NotFound:
            # Not journaled: nothing the bus accepted; park it where an operator sees it.
            await delivery.reject("not in the journal")
            return None
        except BaseException:
            await delivery.lapse()
            raise
        if taken.outcome is ReplyOutcome.TAKEN:
            await delivery.ack()  # after the write: a crash before it redelivers a copy
            for other in others:
                if other.message.message_id in taken.along:
                    await other.ack()
            return taken
        if taken.outcome is ReplyOutcome.CONFLICT:
            return taken
        state = taken.record.state
        if on_copy(state, held_here=False) is not CopyAction.DROP:  # pragma: no cover
            await delivery.lapse()  # the journal takes a response from every other state
            raise IllegalTransition(f"response {message_id} cannot be taken from {state}")
        log.info("redundant_copy_dropped", message_id=message_id, state=str(state))
        await delivery.ack()
        return None


def _reason(delivery: Delivery) -> str:
    return f"attempt {delivery.delivery_count}"


def _queued_reason(delivery: Delivery, participant: str) -> str:
    return HANDED_OVER if isinstance(delivery, HandedOver) else f"seen in responses.{participant}"
