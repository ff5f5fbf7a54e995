"""Handing out queued messages by pull (GetRequest/GetResponse) and settling them (Ack).

A pulled message stays invisible until the caller Acks it; unacked, it comes back
after the transport's visibility timeout (and is journaled QUEUED again). The
delivery waits for its Ack in :class:`~gateway.router.held.PulledMessages`.

A pull may ask for one message type (``MessageTypeSelector/NamespaceURI``). A queue
holds every type for its participant, so messages of other types taken from it on the
way are *parked* in this process, not handed out and not journaled as delivered: the
next pull that wants them gets them first, in queue order, and whatever nobody wants
within the visibility timeout goes back to the queue. At most :data:`PARK_LIMIT`
messages are parked per queue; a filtered pull that finds none of its type among them
answers "no message" even if one lies deeper in the queue.
"""

from __future__ import annotations

import time
import uuid

import structlog
from lxml import etree

from gateway import request_id as request_ids
from gateway.core.admission import check_timestamp
from gateway.core.copies import AckAction, CopyAction, on_ack, on_copy
from gateway.core.errors import InvalidContent, NotFound
from gateway.core.lifecycle import IllegalTransition, MessageState
from gateway.core.registry import Participant
from gateway.crypto.envelope import sign_element
from gateway.ops import metrics
from gateway.ops.metrics import Stage
from gateway.router.context import BusContext
from gateway.router.held import PARK_LIMIT, ParkedMessages, PulledMessages, of_type
from gateway.router.marks import QueuedMarks
from gateway.router.moves import Moves, metadata
from gateway.router.replays import ReplayGuard
from gateway.router.sent import SentRequests
from gateway.store.base import Store, TransitionConflict
from gateway.store.records import MessageRecord
from gateway.transport.base import HEADER_REQUEST_ID, Delivery, Direction, Transport
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.parse import parse_own
from gateway.xml.readers import read_ack, read_selector

log = structlog.get_logger(__name__)


class Pulls:
    """GetRequest, GetResponse and Ack: handing out queued messages and settling them."""

    def __init__(
        self,
        ctx: BusContext,
        transport: Transport,
        store: Store,
        moves: Moves,
        sent: SentRequests,
        marks: QueuedMarks,
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.store = store
        self.moves = moves
        self._pulled = PulledMessages()
        self._parked = ParkedMessages()
        self._replays = ReplayGuard(ctx, store)
        self._sent = sent
        self._marks = marks

    async def get(
        self, body: etree._Element, caller: Participant, direction: Direction
    ) -> etree._Element:
        """GetRequest / GetResponse: the next message for ``caller``, signed by the bus.

        A signed pull is served once (:mod:`gateway.router.replays`), checked before
        anything is taken from the queue."""
        selector = read_selector(body)
        check_timestamp(
            selector.timestamp,
            self.ctx.clock.now(),
            self.ctx.time_policy,
            what="MessageTypeSelector/Timestamp",
        )
        operation = "GetRequest" if direction is Direction.REQUESTS else "GetResponse"
        async with self._replays.admit(body, caller, operation, selector.timestamp):
            delivered = await self.take(caller, direction, selector.namespace_uri)
        if isinstance(delivered, m.RequestDelivery):
            reply, holder = m.build_get_request_response(delivered), "RequestMessage"
        elif isinstance(delivered, m.ResponseDelivery):
            reply, holder = m.build_get_response_response(delivered), "ResponseMessage"
        elif direction is Direction.REQUESTS:
            return m.build_get_request_response(None)
        else:
            return m.build_get_response_response(None)
        # 1.1 puts the bus's signature inside RequestMessage / ResponseMessage.
        sign_element(
            _required(reply.find(f"{{{SMEV_TYPES}}}{holder}")), self.ctx.bus_signer, "SMEVSignature"
        )
        return reply

    async def take(
        self,
        caller: Participant,
        direction: Direction,
        namespace: str | None = None,
    ) -> m.RequestDelivery | m.ResponseDelivery | None:
        """The next message for ``caller`` (of type ``namespace`` if given), journaled
        DELIVERED and held for its Ack."""
        while True:
            delivery = await self._next(direction, caller, namespace)
            if delivery is None:
                return None
            delivered = await self._hand_out(delivery, caller, direction)
            if delivered is not None:
                # The pull goes on, and answers, under the id the message was sent under.
                request_ids.adopt(delivery.message.headers.get(HEADER_REQUEST_ID))
                return delivered

    async def _hand_out(
        self,
        delivery: Delivery,
        caller: Participant,
        direction: Direction,
    ) -> m.RequestDelivery | m.ResponseDelivery | None:
        """``delivery`` journaled DELIVERED and held for its
        Ack; None when it is a copy not to be handed out (settled here)."""
        try:
            began = time.perf_counter()
            record = await self._deliver(delivery, caller, direction)
            metrics.observe_stage(Stage.DELIVER, time.perf_counter() - began)
            self._marks.discard(delivery.message.message_id)  # moved past QUEUED, or a copy
            if record is None:
                return None
            self._sent.keep(record)  # so that its SendResponse finds it as it is now
            self._pulled.hold(caller.mnemonic, delivery)
            return self._delivery_of(delivery, record, caller, direction)
        except IllegalTransition:
            # Two copies of one message (at-least-once publishing) pulled at once:
            # the other one was handed out first, so this copy is redundant.
            current = await self.store.get(delivery.message.message_id)
            if on_copy(current.state, held_here=False, lost_race=True) is CopyAction.REQUEUE:
                await delivery.lapse()
                raise
            log.info(
                "redundant_copy_dropped",
                message_id=delivery.message.message_id,
                state=str(current.state),
            )
            await delivery.ack()
            return None
        except BaseException:
            # Whatever went wrong, the message goes straight back to the queue
            # instead of staying invisible for the whole visibility timeout.
            await delivery.lapse()
            raise

    async def _next(
        self, direction: Direction, caller: Participant, namespace: str | None
    ) -> Delivery | None:
        """The next delivery of the wanted type: set aside earlier, else from the queue."""
        key = (direction, caller.mnemonic)
        while True:
            delivery = self._parked.take(key, namespace)
            if delivery is not None:
                return delivery
            if self._parked.count(key) >= PARK_LIMIT:
                return None
            delivery = await self.transport.get(direction, caller.mnemonic)
            if delivery is None or of_type(delivery, namespace):
                return delivery
            self._parked.park(key, delivery)

    async def _deliver(
        self,
        delivery: Delivery,
        caller: Participant,
        direction: Direction,
    ) -> MessageRecord | None:
        """Journal ``delivery`` DELIVERED; None when it is not to be handed out.

        At-least-once publishing can queue a message twice: a resubmission republishes
        a message whose first publish was confirmed just before the bus died, short of
        journaling QUEUED. A copy of a message already acknowledged (or answered), or
        of one this caller holds right now, carries nothing new: it is acked and
        skipped, so the provider never sees it and it cannot loop to the dead letters.
        """
        message_id = delivery.message.message_id
        attempt = f"attempt {delivery.delivery_count}"
        found: MessageRecord | None = None
        try:
            # The usual case, in one statement: a QUEUED message (or one whose QUEUED
            # move is still to come, gateway.router.marks) is handed out.
            return await self.moves.deliver(
                message_id, attempt, f"seen in {direction}.{caller.mnemonic}"
            )
        except TransitionConflict as refused:
            found = refused.record  # as the refused move found it: no read
        except NotFound:
            # Not journaled: nothing the bus accepted; park it where an operator sees it.
            await delivery.reject("not in the journal")
            return None
        record = found or await self.store.get(message_id)
        held_here = self._pulled.take(caller.mnemonic, message_id) is not None
        action = on_copy(record.state, held_here=held_here)
        if action is CopyAction.QUEUE_AND_DELIVER:
            record = await self.moves.mark_queued(record, f"seen in {direction}.{caller.mnemonic}")
            if record.state is not MessageState.QUEUED:  # another copy moved it meanwhile
                action = on_copy(record.state, held_here=False, lost_race=True)
        if action is CopyAction.DROP:
            log.info("redundant_copy_dropped", message_id=message_id, state=str(record.state))
            await delivery.ack()
            return None
        if action is CopyAction.REDELIVER:
            record = await self.moves.move(
                message_id, MessageState.QUEUED, "not acknowledged in time", seen=record
            )
        return await self.moves.move(message_id, MessageState.DELIVERED, attempt, seen=record)

    def _delivery_of(
        self, delivery: Delivery, record: MessageRecord, caller: Participant, direction: Direction
    ) -> m.RequestDelivery | m.ResponseDelivery:
        # Re-parsed, not kept: the body is the journaled form the bus wrote itself.
        stored = parse_own(delivery.message.body)
        sender = self.ctx.registry.get(record.sender)
        meta = metadata(record, sender, caller, record.created_at, delivered=record.updated_at)
        if direction is Direction.REQUESTS:
            request_data = stored.find(f"{{{SMEV_TYPES}}}SenderProvidedRequestData")
            return m.RequestDelivery(
                request_data=_required(request_data),
                metadata=meta,
                reply_to=record.message_id,
                sender_signature=_caller_signature(stored),
            )
        response_data = stored.find(f"{{{SMEV_TYPES}}}SenderProvidedResponseData")
        return m.ResponseDelivery(
            original_message_id=uuid.UUID(_required_text(record.in_reply_to)),
            response_data=_required(response_data),
            metadata=meta,
            sender_signature=_caller_signature(stored),
        )

    async def ack(self, body: etree._Element, caller: Participant) -> etree._Element:
        target = read_ack(body)
        await self.settle(caller, str(target.message_id), accepted=target.accepted)
        return m.build_ack_response()

    async def settle(self, caller: Participant, message_id: str, *, accepted: bool) -> None:
        """Ack a message handed out to ``caller``: journal ACKED, remove it from its queue.

        The delivery is held by the gateway process that handed it out. An Ack that
        reaches another process (several behind a balancer), or arrives after the
        visibility timeout, is journaled all the same; the copy still in the queue is
        dropped as redundant when it comes back (:meth:`_deliver`), never handed out
        again.
        """
        reason = None if accepted else "recipient could not verify the bus signature"
        delivery = self._pulled.take(caller.mnemonic, message_id)
        if delivery is None:
            await self._ack_elsewhere(caller, message_id, reason)
            return
        if self._pulled.answered(caller.mnemonic, message_id):
            # Its final answer moved the request past DELIVERED: nothing to journal.
            await delivery.ack()
            return
        await self.settle_delivery(delivery, reason)

    async def settle_delivery(self, delivery: Delivery, reason: str | None = None) -> None:
        """A delivery handed out by this process is done: journal ACKED (and its request
        RESPONSE_DELIVERED when it is a final answer), then remove it from its queue."""
        # One statement: DELIVERED -> ACKED, and for a final answer its request
        # RESPONDED -> RESPONSE_DELIVERED. A provider may answer before it acks
        # (RESPONDED): the request is left so, nothing fails.
        await self.store.acknowledge(
            delivery.message.message_id, at=self.ctx.clock.now(), reason=reason, actor="bus"
        )
        await delivery.ack()

    def answered(self, caller: Participant, request_id: str) -> None:
        """``caller`` gave its final answer to ``request_id``, which it may hold here: its
        Ack will have nothing to journal."""
        self._pulled.mark_answered(caller.mnemonic, request_id)

    async def _ack_elsewhere(
        self, caller: Participant, message_id: str, reason: str | None
    ) -> None:
        """Journal the Ack of a message ``caller`` was handed but this process does not
        hold (``NotFound`` unless it is DELIVERED to ``caller``)."""
        not_held = NotFound(
            f"{caller.mnemonic} has no unacknowledged message {message_id}: it was "
            "acknowledged already, or never handed out to it",
            message_id=message_id,
        )
        try:
            record = await self.store.get(message_id)
        except NotFound:
            raise not_held from None
        if record.recipient != caller.mnemonic:
            raise not_held
        action = on_ack(record.state)
        if action is AckAction.ALREADY_SETTLED:
            return  # answered before the Ack: settled, as where it is held
        if action is AckAction.NOT_HELD:
            raise not_held
        acked = await self.store.acknowledge(
            message_id, at=self.ctx.clock.now(), reason=reason, actor="bus"
        )
        if not acked.moved:
            raise not_held
        log.info("acked_elsewhere", message_id=message_id)


def _required(element: etree._Element | None) -> etree._Element:
    if element is None:
        raise InvalidContent("a stored message lost its signed part")
    return element


def _required_text(value: str | None) -> str:
    if value is None:
        raise InvalidContent("a stored response lost the id of its request")
    return value


def _caller_signature(stored: etree._Element) -> etree._Element:
    holder = stored.find(f"{{{SMEV_TYPES}}}CallerInformationSystemSignature")
    return _required(None if holder is None else holder[0])
