"""The bus: the six message-exchange operations over a transport and a journal.

``Router.handle`` takes a SOAP 1.1 request as bytes and returns the SOAP reply as
bytes (a Fault for every refusal), so the HTTP endpoint, the demo and the tests all
drive the same code. Steps per DESIGN.md section 4:

SendRequest:  intake -> content XSD -> authorize(sender, type) -> journal ACCEPTED
              (dedup by MessageID) -> publish requests.<provider> -> journal QUEUED
GetRequest:   pull from requests.<caller> -> journal DELIVERED -> bus signs the Request
SendResponse: intake -> the request exists and went to this caller -> content XSD of
              the same type -> journal the response -> publish responses.<consumer>
GetResponse / Ack / GetStatus: the consumer's side of the same.

A pulled message stays invisible until the caller Acks it; unacked, it comes back
after the transport's visibility timeout (and is journaled QUEUED again). A request
an adapter consumed straight from its queue (push) is journaled DELIVERED ("delivered
by push") when its answer arrives, then RESPONDED as usual.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from lxml import etree

from gateway.core.admission import AnsweredRequest, admit_request, admit_response, check_timestamp
from gateway.core.envelope import MessageKind, MessageMetadata, ParticipantRef
from gateway.core.errors import InvalidContent, NotFound
from gateway.core.faults import fault_of
from gateway.core.lifecycle import TERMINAL, IllegalTransition, MessageState
from gateway.core.registry import Participant
from gateway.crypto.envelope import sign_element
from gateway.router import intake
from gateway.router.context import BusContext
from gateway.router.deadletters import DeadLetterJournal
from gateway.router.pulls import PulledMessages
from gateway.store.base import Store
from gateway.store.records import AcceptOutcome, MessageRecord, NewMessage
from gateway.transport.base import Delivery, Direction, Message, Transport
from gateway.xml import messages as m
from gateway.xml.faults import soap_fault
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.parse import parse_secure
from gateway.xml.readers import (
    read_ack,
    read_get_status,
    read_selector,
    read_send_request,
    read_send_response,
)
from gateway.xml.soap import wrap_envelope

log = structlog.get_logger(__name__)

#: Names of the transport headers the router sets.
H_SENDER, H_TYPE, H_KIND = "sender", "message-type", "kind"


class Router:
    def __init__(self, ctx: BusContext, transport: Transport, store: Store) -> None:
        self.ctx = ctx
        self.transport = transport
        self.store = store
        self._pulled = PulledMessages()

    async def start(self) -> None:
        await self.store.migrate()
        await self.transport.declare(self.ctx.registry.mnemonics)
        # Journal what the transport dead-letters (stopped by transport.close()).
        journal = DeadLetterJournal(self.store, self.ctx.clock)
        await self.transport.watch_dead_letters(journal.record)

    async def close(self) -> None:
        await self.transport.close()
        await self.store.close()

    async def readiness(self) -> dict[str, str]:
        """``{"journal": "ok"|error, "transport": "ok"|error}`` for ``/ready``."""
        checks: dict[str, str] = {}
        try:
            await self.store.find(limit=1)
            checks["journal"] = "ok"
        except Exception as exc:
            checks["journal"] = f"unavailable: {type(exc).__name__}"
        try:
            await self.transport.depth(Direction.REQUESTS, self.ctx.registry.mnemonics[0])
            checks["transport"] = "ok"
        except Exception as exc:
            checks["transport"] = f"unavailable: {type(exc).__name__}"
        return checks

    async def handle(self, raw: bytes) -> tuple[int, bytes]:
        """Serve one SOAP request: ``(http_status, soap_reply)``; never raises."""
        operation = "?"
        try:
            incoming = intake.read_envelope(raw, self.ctx)
            operation = incoming.operation
            caller = intake.authenticate(incoming.body, self.ctx)
            with structlog.contextvars.bound_contextvars(participant=caller.mnemonic):
                reply = await self._dispatch(operation, incoming.body, caller)
            return 200, wrap_envelope(reply)
        except Exception as exc:  # every failure becomes a Fault with a stable code
            fault = fault_of(exc)
            if fault.code == "internal":
                log.exception("operation_failed", operation=operation)
            else:
                log.info(
                    "message_refused",
                    operation=operation,
                    code=fault.code,
                    origin=str(fault.origin),
                    reason=fault.message,
                )
            return 500, soap_fault(exc)

    async def _dispatch(
        self, operation: str, body: etree._Element, caller: Participant
    ) -> etree._Element:
        match operation:
            case "SendRequest":
                return await self.send_request(body, caller)
            case "GetRequest":
                return await self._get(body, caller, Direction.REQUESTS)
            case "SendResponse":
                return await self.send_response(body, caller)
            case "GetResponse":
                return await self._get(body, caller, Direction.RESPONSES)
            case "Ack":
                return await self.ack(body, caller)
            case "GetStatus":
                return await self.get_status(body, caller)
        raise InvalidContent(f"unknown operation {operation}")  # unwrap_envelope prevents this

    # --- consumer sends -------------------------------------------------------------

    async def send_request(self, body: etree._Element, sender: Participant) -> etree._Element:
        data = read_send_request(body)
        message_type = self.ctx.catalog.validate(data.content, expect="request").namespace
        request = intake.request_model(data, message_type)
        provider = admit_request(
            request, sender, self.ctx.registry, self.ctx.clock.now(), self.ctx.time_policy
        )
        new = NewMessage(
            message_id=str(request.message_id),
            kind=MessageKind.REQUEST,
            sender=sender.mnemonic,
            recipient=provider.mnemonic,
            message_type=message_type,
            content_sha256=intake.content_digest(data.element),
            xml=etree.tostring(body),
            expires_at=request.eol,
            test_message=request.test_message,
        )
        record = await self._journal_and_publish(new, Direction.REQUESTS)
        return self._signed_send_result("SendRequestResponse", record, sender, provider)

    async def send_response(self, body: etree._Element, provider: Participant) -> etree._Element:
        data = read_send_response(body)
        request = await self._request_answered_by(data.to)
        message_type = (
            None
            if data.content is None
            else self.ctx.catalog.validate(data.content, expect="response").namespace
        )
        response = intake.response_model(data, message_type)
        consumer = admit_response(
            response,
            provider,
            AnsweredRequest(
                request.message_id, request.sender, request.recipient, request.message_type
            ),
            self.ctx.registry,
            self.ctx.clock.now(),
            self.ctx.time_policy,
        )
        new = NewMessage(
            message_id=str(response.message_id),
            kind=MessageKind.RESPONSE,
            sender=provider.mnemonic,
            recipient=consumer.mnemonic,
            message_type=request.message_type,
            content_sha256=intake.content_digest(data.element),
            xml=etree.tostring(body),
            in_reply_to=request.message_id,
            expires_at=request.expires_at,
            test_message=request.test_message,
        )
        record = await self._journal_and_publish(new, Direction.RESPONSES)
        if request.state is MessageState.QUEUED:  # consumed from its queue (push), never pulled
            request = await self._move(
                request.message_id, MessageState.DELIVERED, "delivered by push"
            )
        if response.is_final and request.state in (MessageState.DELIVERED, MessageState.ACKED):
            await self._move(request.message_id, MessageState.RESPONDED, f"by {record.message_id}")
        return self._signed_send_result("SendResponseResponse", record, provider, consumer)

    async def _request_answered_by(self, to: str) -> MessageRecord:
        try:
            request = await self.store.get(str(uuid.UUID(to)))
        except (ValueError, NotFound):
            request = None
        if request is None or request.kind is not MessageKind.REQUEST:
            raise NotFound(
                f"To={to!r} names no request on the bus; copy ReplyTo from the request",
                to=to,
            )
        return request

    async def _journal_and_publish(self, new: NewMessage, direction: Direction) -> MessageRecord:
        now = self.ctx.clock.now()
        result = await self.store.accept(new, at=now, actor=new.sender)
        record = result.record
        if result.outcome is AcceptOutcome.DUPLICATE and record.state is not MessageState.ACCEPTED:
            log.info("duplicate_submission", message_id=new.message_id, state=str(record.state))
            return record
        # New, or journaled but not yet queued (the first attempt died before publishing).
        await self.transport.publish(
            direction,
            new.recipient,
            Message(
                message_id=new.message_id,
                body=new.xml,
                headers={H_SENDER: new.sender, H_TYPE: new.message_type, H_KIND: str(new.kind)},
                expires_at=new.expires_at,
            ),
        )
        return await self._mark_queued(record, f"to {direction}.{new.recipient}")

    def _signed_send_result(
        self, name: str, record: MessageRecord, sender: Participant, recipient: Participant
    ) -> etree._Element:
        meta = self._metadata(record, sender, recipient, record.updated_at)
        build = (
            m.build_send_request_response
            if name == "SendRequestResponse"
            else (m.build_send_response_response)
        )
        return sign_element(build(meta), self.ctx.bus_signer, "SMEVSignature")

    # --- pulls ----------------------------------------------------------------------

    async def _get(
        self, body: etree._Element, caller: Participant, direction: Direction
    ) -> etree._Element:
        selector = read_selector(body)
        check_timestamp(
            selector.timestamp,
            self.ctx.clock.now(),
            self.ctx.time_policy,
            what="MessageTypeSelector/Timestamp",
        )
        building = (
            m.build_get_request_response
            if direction is Direction.REQUESTS
            else m.build_get_response_response
        )
        pulled = await self._pull(direction, caller)
        if pulled is None:
            return building(None)
        delivery, record = pulled
        try:
            return await self._hand_out(delivery, record, caller, direction)
        except BaseException:
            # Whatever went wrong, the message goes straight back to the queue instead of
            # staying invisible for the whole visibility timeout.
            await delivery.lapse()
            raise

    async def _hand_out(
        self, delivery: Delivery, record: MessageRecord, caller: Participant, direction: Direction
    ) -> etree._Element:
        message_id = delivery.message.message_id
        if record.state is MessageState.ACCEPTED:  # delivered before the sender journaled it
            record = await self._mark_queued(record, f"seen in {direction}.{caller.mnemonic}")
        if record.state is MessageState.DELIVERED:  # the visibility timeout lapsed before
            await self._move(message_id, MessageState.QUEUED, "not acknowledged in time")
        record = await self._move(
            message_id, MessageState.DELIVERED, f"attempt {delivery.delivery_count}"
        )
        self._pulled.hold(caller.mnemonic, delivery)
        stored = parse_secure(delivery.message.body, max_bytes=2 * self.ctx.max_message_bytes)
        sender = self.ctx.registry.get(record.sender)
        meta = self._metadata(
            record, sender, caller, record.created_at, delivered=record.updated_at
        )
        if direction is Direction.REQUESTS:
            request_data = stored.find(f"{{{SMEV_TYPES}}}SenderProvidedRequestData")
            reply: etree._Element = m.build_get_request_response(
                m.RequestDelivery(
                    request_data=_required(request_data),
                    metadata=meta,
                    reply_to=record.message_id,
                    sender_signature=_caller_signature(stored),
                )
            )
        else:
            response_data = stored.find(f"{{{SMEV_TYPES}}}SenderProvidedResponseData")
            reply = m.build_get_response_response(
                m.ResponseDelivery(
                    original_message_id=uuid.UUID(_required_text(record.in_reply_to)),
                    response_data=_required(response_data),
                    metadata=meta,
                    sender_signature=_caller_signature(stored),
                )
            )
        return sign_element(reply, self.ctx.bus_signer, "SMEVSignature")

    async def ack(self, body: etree._Element, caller: Participant) -> etree._Element:
        target = read_ack(body)
        message_id = str(target.message_id)
        delivery = self._pulled.take(caller.mnemonic, message_id)
        if delivery is None:
            raise NotFound(
                f"{caller.mnemonic} holds no unacknowledged message {message_id}: it was "
                "acknowledged already, or not within the visibility timeout (then pull it again)",
                message_id=message_id,
            )
        record = await self.store.get(message_id)
        if record.state is MessageState.DELIVERED:  # a provider may answer before it acks
            record = await self._move(
                message_id,
                MessageState.ACKED,
                None if target.accepted else "recipient could not verify the bus signature",
            )
        await delivery.ack()
        if record.kind is MessageKind.RESPONSE and record.in_reply_to is not None:
            request = await self.store.get(record.in_reply_to)
            if request.state is MessageState.RESPONDED:
                await self._move(request.message_id, MessageState.RESPONSE_DELIVERED, None)
        return m.build_ack_response()

    async def get_status(self, body: etree._Element, caller: Participant) -> etree._Element:
        message_id = str(read_get_status(body))
        try:
            record = await self.store.get(message_id)
        except NotFound:
            record = None
        if record is None or caller.mnemonic not in (record.sender, record.recipient):
            # Same answer whether it does not exist or is someone else's: no probing.
            raise NotFound(f"no message {message_id} sent by or to {caller.mnemonic}")
        history = await self.store.history(message_id)
        return m.build_get_status_response(
            m.StatusReport(
                message_id=uuid.UUID(message_id),
                status=str(record.state),
                history=tuple(m.Transition(str(t.to_state), t.at, t.reason) for t in history),
            )
        )

    # --- helpers --------------------------------------------------------------------

    async def _pull(
        self, direction: Direction, caller: Participant
    ) -> tuple[Delivery, MessageRecord] | None:
        """The next delivery for ``caller`` that is not a redundant copy.

        At-least-once publishing can queue a message twice: a resubmission republishes
        a message whose first publish was confirmed just before the bus died, short of
        journaling QUEUED. A copy of a message already acknowledged (or answered), or
        of one this caller holds right now, carries nothing new: it is acked and
        skipped, so the provider never sees it and it cannot loop to the dead letters.
        """
        while True:
            delivery = await self.transport.get(direction, caller.mnemonic)
            if delivery is None:
                return None
            message_id = delivery.message.message_id
            try:
                record = await self.store.get(message_id)
            except NotFound:
                # Not journaled: nothing the bus accepted; park it where an operator sees it.
                await delivery.reject("not in the journal")
                continue
            state = record.state
            in_hand = self._pulled.take(caller.mnemonic, message_id) is not None
            if state not in _SETTLED and not (state is MessageState.DELIVERED and in_hand):
                return delivery, record
            log.info("redundant_copy_dropped", message_id=message_id, state=str(state))
            await delivery.ack()

    async def _mark_queued(self, accepted: MessageRecord, reason: str) -> MessageRecord:
        """ACCEPTED -> QUEUED once the broker has the message.

        Two parties may get here first: the publisher after the broker's confirm, and a
        fast consumer that pulled the message before that; whoever is second finds the
        move made and carries on. The move is conditional on the version read while the
        message was ACCEPTED: a publisher second must not take a DELIVERED message back
        to QUEUED (a legal move on its own), or the consumer's Ack would find it QUEUED
        and the journal would never say ACKED.
        """
        message_id = accepted.message_id
        try:
            return await self.store.transition(
                message_id,
                MessageState.QUEUED,
                at=self.ctx.clock.now(),
                reason=reason,
                actor="bus",
                expected_version=accepted.version,
            )
        except IllegalTransition:  # TransitionConflict included
            record = await self.store.get(message_id)
            if record.state is MessageState.ACCEPTED:
                raise
            return record

    async def _move(
        self, message_id: str, state: MessageState, reason: str | None
    ) -> MessageRecord:
        return await self.store.transition(
            message_id, state, at=self.ctx.clock.now(), reason=reason, actor="bus"
        )

    def _metadata(
        self,
        record: MessageRecord,
        sender: Participant,
        recipient: Participant,
        sent: datetime,
        *,
        delivered: datetime | None = None,
    ) -> MessageMetadata:
        return MessageMetadata(
            message_id=uuid.UUID(record.message_id),
            message_type=record.message_type,
            sender=ParticipantRef(mnemonic=sender.mnemonic, name=sender.name),
            recipient=ParticipantRef(mnemonic=recipient.mnemonic, name=recipient.name),
            sending_timestamp=sent,
            delivery_timestamp=delivered,
            status=str(record.state),
        )


#: States in which a message's delivery is over: a further copy of it is redundant.
_SETTLED = frozenset({MessageState.ACKED, MessageState.RESPONDED}) | TERMINAL


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
