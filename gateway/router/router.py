"""The bus: the six message-exchange operations over a transport and a journal.

``Router.handle`` takes a SOAP 1.1 request as bytes and returns the SOAP reply as
bytes (a Fault for every refusal), so the HTTP endpoint, the demo and the tests all
drive the same code. Steps per DESIGN.md section 4:

SendRequest:  intake -> content XSD -> authorize(sender, type) -> journal ACCEPTED
              (dedup by MessageID) -> publish requests.<provider> -> answer; journal
              QUEUED later unless handed out first (:mod:`gateway.router.marks`)
GetRequest:   pull from requests.<caller> -> journal DELIVERED -> bus signs the Request
SendResponse: intake -> the request exists and went to this caller -> content XSD of
              the same type -> journal the response -> publish responses.<consumer>,
              or hand it to the consumer's intake in this process
              (:mod:`gateway.router.handover`)
GetResponse / Ack: the consumer's side of the same.
GetStatus:    the caller's next status notice (:mod:`gateway.router.statuses`)
GetIncomingQueueStatistics: messages waiting in the caller's two queues

Pulls and Acks live in :mod:`gateway.router.pulls`, responses pushed to the
aggregator in :mod:`gateway.router.pushed`, the bus's own journal moves in
:mod:`gateway.router.moves`. A request
an adapter consumed straight from its queue (push) is journaled DELIVERED ("delivered
by push") when its answer arrives, then RESPONDED as usual.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from cryptography import x509
from lxml import etree

from gateway.core.admission import (
    AnsweredRequest,
    admit_request,
    admit_response,
    check_timestamp,
)
from gateway.core.envelope import (
    MessageKind,
    SenderProvidedRequestData,
    SenderProvidedResponseData,
)
from gateway.core.errors import InvalidContent, MessageAlreadySent, NotFound
from gateway.core.faults import fault_of
from gateway.core.lifecycle import MessageState
from gateway.core.registry import Participant
from gateway.core.smev_faults import Operation
from gateway.crypto.envelope import sign_element
from gateway.ops import metrics
from gateway.ops.metrics import MessageOutcome, Stage
from gateway.router import intake
from gateway.router.context import BusContext
from gateway.router.deadletters import DeadLetterJournal
from gateway.router.handover import HandedOver, HandOver
from gateway.router.holds import AnswerHolds
from gateway.router.marks import QueuedMarks
from gateway.router.moves import Moves, metadata
from gateway.router.outbox import Relay, queued
from gateway.router.pulls import Pulls
from gateway.router.pushed import PushedReplies, PushedReply, read_reply
from gateway.router.replays import ReplayGuard
from gateway.router.sent import SentRequests
from gateway.router.statuses import StatusFeed
from gateway.store.base import Store
from gateway.store.records import (
    AcceptOutcome,
    AcceptResult,
    MessageRecord,
    NewMessage,
    canonical_message_id,
)
from gateway.store.replies import ReplySave, ReplyTaken
from gateway.transport.base import Delivery, Direction, Subscription, Transport
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.readers import (
    read_get_incoming_queue_statistics,
    read_get_status,
    read_send_request,
    read_send_response,
)
from gateway.xml.smev_faults import smev_fault
from gateway.xml.soap import wrap_envelope

log = structlog.get_logger(__name__)


#: Operations that hand the bus a message (counted in ``smevbus_messages_total``).
_SENDS = frozenset({"SendRequest", "SendResponse"})


@dataclass(frozen=True, slots=True)
class AdmittedRequest:
    """A SendRequest that passed the router's checks (:meth:`Router.admit_request`):
    what journaling and publishing it takes."""

    new: NewMessage
    provider: Participant


def _operation(name: str) -> Operation | None:
    """The operation by name; None before the envelope named one."""
    try:
        return Operation(name)
    except ValueError:
        return None


class Router:
    def __init__(self, ctx: BusContext, transport: Transport, store: Store) -> None:
        self._ctx = ctx
        self._transport = transport
        self._store = store
        self._moves = Moves(store, ctx.clock)
        self._sent = SentRequests()
        self._holds = AnswerHolds(self._sent)
        self._marks = QueuedMarks(self._moves)
        self._pulls = Pulls(ctx, transport, store, self._moves, self._sent, self._marks)
        self._pushed = PushedReplies(store, ctx.clock)
        self._statuses = StatusFeed(ctx, store)
        self._replays = ReplayGuard(ctx, store)
        #: Participants served in this process, and their intakes (handover.py).
        self._local: dict[str, HandOver] = {}

    async def start(self) -> None:
        """Migrate the journal and declare every participant's queues (idempotent)."""
        await self._store.migrate()
        await self._transport.declare(self._ctx.registry.mnemonics)

    def relay(self, after: timedelta) -> Relay:
        """The relay of messages left ACCEPTED for longer than ``after`` (a process died
        between journaling and publishing them): see :mod:`gateway.router.outbox`."""
        return Relay(self._store, self._transport, self._moves, after=after)

    async def journal_queued_marks(self, *, everything: bool = False) -> int:
        """Journal QUEUED what was published and not handed out for a while
        (:mod:`gateway.router.marks`; ``everything``: all of it, as on shutdown)."""
        return await self._marks.flush(everything=everything)

    async def watch_dead_letters(self) -> Subscription:
        """Journal what the transport dead-letters, from now until the subscription is
        cancelled (or the transport closed)."""
        journal = DeadLetterJournal(self._store, self._ctx.clock)
        return await self._transport.watch_dead_letters(journal.record)

    # --- in-process participants (LocalParticipant, the aggregator's subscription) ----

    async def take(
        self, participant: str, direction: Direction
    ) -> m.RequestDelivery | m.ResponseDelivery | None:
        """The next message for ``participant``, journaled DELIVERED, held for its Ack
        (:meth:`settle`): GetRequest/GetResponse without SOAP or the bus signature."""
        return await self._pulls.take(self._ctx.registry.get(participant), direction)

    async def settle(self, participant: str, message_id: str, *, accepted: bool = True) -> None:
        """Ack without SOAP: a message :meth:`take` handed out to ``participant``."""
        await self._pulls.settle(self._ctx.registry.get(participant), message_id, accepted=accepted)

    def read_reply(self, delivery: Delivery) -> PushedReply:
        """What a subscriber in this process needs of a response pushed to it from
        ``responses.<participant>``, read without the journal; it then settles the
        delivery with :meth:`take_reply`."""
        return read_reply(delivery)

    async def take_reply(
        self,
        participant: str,
        delivery: Delivery,
        save: ReplySave | None,
        along: Sequence[Delivery] = (),
    ) -> ReplyTaken | None:
        """A pushed response is done with: journaled ACKED (its request
        RESPONSE_DELIVERED) in one write with the subscriber's service-request ``save``
        (and the responses ``along`` that can be), then acked on the transport; see
        :meth:`PushedReplies.take <gateway.router.pushed.PushedReplies.take>` for what
        comes back."""
        taken = await self._pushed.take(participant, delivery, save, along)
        self._marks.discard(delivery.message.message_id)
        if taken is not None:
            for message_id in taken.along:
                self._marks.discard(message_id)
        return taken

    def serve_locally(self, participant: str, hand: HandOver | None) -> None:
        """Hand the responses to ``participant`` journaled from now on to ``hand``,
        not to the broker (None: to the broker again); see :mod:`gateway.router.handover`."""
        if hand is None:
            self._local.pop(participant, None)
        else:
            self._local[participant] = hand

    async def readiness(self) -> dict[str, str]:
        """``{"journal": "ok"|error, "transport": "ok"|error}`` for ``/ready``."""
        checks: dict[str, str] = {}
        try:
            await self._store.find(limit=1)
            checks["journal"] = "ok"
        except Exception as exc:
            checks["journal"] = f"unavailable: {type(exc).__name__}"
        try:
            await self._transport.depth(Direction.REQUESTS, self._ctx.registry.mnemonics[0])
            checks["transport"] = "ok"
        except Exception as exc:
            checks["transport"] = f"unavailable: {type(exc).__name__}"
        return checks

    async def handle(
        self, raw: bytes, *, tls_client: x509.Certificate | None = None
    ) -> tuple[int, bytes]:
        """Serve one SOAP request: ``(http_status, soap_reply)``; never raises.

        A request larger than ``ctx.thread_above_bytes`` is parsed, validated and
        verified in a worker thread: lxml lets go of the GIL while it parses, validates
        and canonicalizes, and the event loop goes on serving other requests meanwhile.
        A smaller one costs less than the thread hop and is served in place (called
        inline, not through a coroutine of its own). ``tls_client`` is the TLS client
        certificate the request came with, if any: it must belong to the participant
        that signed the request."""
        operation, caller = "?", None
        large = len(raw) > self._ctx.thread_above_bytes
        try:
            began = time.perf_counter()
            incoming = (
                await asyncio.to_thread(intake.read_envelope, raw, self._ctx)
                if large
                else intake.read_envelope(raw, self._ctx)
            )
            operation = incoming.operation
            parsed = time.perf_counter()
            metrics.observe_stage(Stage.PARSE, parsed - began)
            caller = (
                await asyncio.to_thread(intake.authenticate, incoming.body, self._ctx)
                if large
                else intake.authenticate(incoming.body, self._ctx)
            )
            metrics.observe_stage(Stage.VERIFY, time.perf_counter() - parsed)
            intake.check_tls_client(caller, tls_client, self._ctx.registry)
            # bound_contextvars, without its copy of every bound var and its generator:
            # the token puts back what was bound before, as it would.
            bound = structlog.contextvars.bind_contextvars(participant=caller.mnemonic)
            try:
                reply = await self._dispatch(operation, incoming.body, caller, large)
            finally:
                structlog.contextvars.reset_contextvars(**bound)
            return 200, wrap_envelope(reply)
        except Exception as exc:  # every failure becomes a Fault with a stable code
            fault = fault_of(exc)
            metrics.count_fault(fault.code)
            if operation in _SENDS:
                # Only registered names as labels: the refused content is not trusted.
                sender = "" if caller is None else caller.mnemonic
                metrics.count_message("", sender, "", MessageOutcome.REFUSED)
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
            return 500, smev_fault(exc, _operation(operation))

    def _dispatch(
        self, operation: str, body: etree._Element, caller: Participant, large: bool
    ) -> Coroutine[Any, Any, etree._Element]:
        # The operation's coroutine itself, awaited by handle(): no frame of its own.
        match operation:
            case "SendRequest":
                return self.send_request(body, caller, large=large)
            case "GetRequest":
                return self._pulls.get(body, caller, Direction.REQUESTS)
            case "SendResponse":
                return self.send_response(body, caller, large=large)
            case "GetResponse":
                return self._pulls.get(body, caller, Direction.RESPONSES)
            case "Ack":
                return self._pulls.ack(body, caller)
            case "GetStatus":
                return self.get_status(body, caller)
            case "GetIncomingQueueStatistics":
                return self.queue_statistics(body, caller)
        raise InvalidContent(f"unknown operation {operation}")  # unwrap_envelope prevents this

    # --- consumer sends -------------------------------------------------------------

    async def send_request(
        self, body: etree._Element, sender: Participant, *, large: bool = False
    ) -> etree._Element:
        record, provider = await self.submit_request(body, sender, large=large)
        return self._signed_send_result("SendRequestResponse", record, sender, provider)

    async def submit_request(
        self, body: etree._Element, sender: Participant, *, large: bool = False
    ) -> tuple[MessageRecord, Participant]:
        """SendRequest of an authenticated ``sender``: the queued record and its provider.
        ``large``: read the content in a worker thread."""
        data = read_send_request(body)
        read = (
            await asyncio.to_thread(self._read_request, data, body)
            if large
            else self._read_request(data, body)
        )
        return await self.queue_request(self._admitted(read, sender))

    def admit_request(self, body: etree._Element, sender: Participant) -> AdmittedRequest:
        """The checks of :meth:`submit_request` alone: nothing journaled or published
        until :meth:`queue_request`. An in-process sender makes them while it waits for
        something else (:meth:`~gateway.router.local.LocalParticipant.prepare_request`)."""
        return self._admitted(self._read_request(read_send_request(body), body), sender)

    async def queue_request(self, admitted: AdmittedRequest) -> tuple[MessageRecord, Participant]:
        """Journal and publish an admitted request: its queued record and its provider."""
        record = await self._journal_and_publish(admitted.new, Direction.REQUESTS)
        return record, admitted.provider

    def _admitted(
        self,
        read: tuple[SenderProvidedRequestData, str, str, bytes],
        sender: Participant,
    ) -> AdmittedRequest:
        request, message_type, digest, xml = read
        provider = admit_request(
            request, sender, self._ctx.registry, self._ctx.clock.now(), self._ctx.time_policy
        )
        new = NewMessage(
            message_id=str(request.message_id),
            kind=MessageKind.REQUEST,
            sender=sender.mnemonic,
            recipient=provider.mnemonic,
            message_type=message_type,
            content_sha256=digest,
            xml=xml,
            expires_at=request.eol,
            test_message=request.test_message,
        )
        return AdmittedRequest(new, provider)

    def _read_request(
        self, data: m.RequestData, body: etree._Element
    ) -> tuple[SenderProvidedRequestData, str, str, bytes]:
        """The request's values, message type, content digest and journal form."""
        began = time.perf_counter()
        message_type = self._ctx.catalog.validate(data.content, expect="request").namespace
        metrics.observe_stage(Stage.SCHEMA, time.perf_counter() - began)
        return (
            intake.request_model(data, message_type),
            message_type,
            intake.content_digest(data.element),
            etree.tostring(body),
        )

    def _read_response(
        self, data: m.ResponseData, body: etree._Element
    ) -> tuple[SenderProvidedResponseData, str, bytes]:
        """The response's values, content digest and journal form."""
        began = time.perf_counter()
        message_type = (
            None
            if data.content is None
            else self._ctx.catalog.validate(data.content, expect="response").namespace
        )
        metrics.observe_stage(Stage.SCHEMA, time.perf_counter() - began)
        return (
            intake.response_model(data, message_type),
            intake.content_digest(data.element),
            etree.tostring(body),
        )

    async def send_response(
        self, body: etree._Element, provider: Participant, *, large: bool = False
    ) -> etree._Element:
        data = read_send_response(body)
        request = await self._request_answered_by(data.to)
        response, digest, xml = (
            await asyncio.to_thread(self._read_response, data, body)
            if large
            else self._read_response(data, body)
        )
        consumer = admit_response(
            response,
            provider,
            AnsweredRequest(
                request.message_id, request.sender, request.recipient, request.message_type
            ),
            self._ctx.registry,
            self._ctx.clock.now(),
            self._ctx.time_policy,
        )
        new = NewMessage(
            message_id=str(response.message_id),
            kind=MessageKind.RESPONSE,
            sender=provider.mnemonic,
            recipient=consumer.mnemonic,
            message_type=request.message_type,
            content_sha256=digest,
            xml=xml,
            in_reply_to=request.message_id,
            expires_at=request.expires_at,
            test_message=request.test_message,
            # Kept in its own column so the KPIs tell an unavailable agency from an answer.
            rejection_code=response.rejections[0].code.value if response.rejections else None,
        )
        # One transaction: the claim of a final answer, the response journaled, and the
        # request moved on from the state it is in now (QUEUED if its provider consumed
        # it by push, even ACCEPTED if its sender has not journaled the publish yet).
        began = time.perf_counter()
        answered = await self._store.answer(
            new, final=response.is_final, at=self._ctx.clock.now(), actor=new.sender, seen=request
        )
        metrics.observe_stage(Stage.JOURNAL, time.perf_counter() - began)
        if answered.result is None:
            existing = await self._refuse_second_answer(request, new.message_id)
            if existing.content_sha256 != new.content_sha256:
                raise MessageAlreadySent(
                    f"message {new.message_id} was already sent with different content",
                    message_id=new.message_id,
                )
            result = AcceptResult(AcceptOutcome.DUPLICATE, existing)
        else:
            result = answered.result
        self._sent.keep(answered.request)
        self._marks.discard(request.message_id)
        if answered.request.state is MessageState.RESPONDED:
            self._pulls.answered(provider, request.message_id)
            if result.outcome is AcceptOutcome.ACCEPTED:
                # The exchange's whole time: request journaled -> its final answer journaled.
                waited = self._ctx.clock.now() - request.created_at
                metrics.observe_stage(Stage.END_TO_END, waited.total_seconds())
        hand = self._local.get(new.recipient)
        if hand is not None and result.outcome is AcceptOutcome.ACCEPTED:
            await self._hand_over(hand, new, data, request)
            record = self._as_queued(result.record)
        else:
            record = await self._publish(new, result, Direction.RESPONSES)
        return self._signed_send_result("SendResponseResponse", record, provider, consumer)

    async def _refuse_second_answer(
        self, request: MessageRecord, response_id: str
    ) -> MessageRecord:
        """A request gets one final answer, claimed on the request row before it is
        journaled, so of two answers racing only one gets through. A provider that
        answers again under a new MessageID (it was handed a redundant copy of the
        request: at-least-once delivery) is refused; a retry of the journaled answer
        stays idempotent: the journaled answer is returned."""
        try:
            return await self._store.get(response_id)
        except NotFound:
            raise MessageAlreadySent(
                f"request {request.message_id} already has its final answer; this second "
                f"answer {response_id} is refused (a redundant copy of the request: "
                "acknowledge it and drop it)",
                message_id=response_id,
                request_id=request.message_id,
            ) from None

    async def _request_answered_by(self, to: str) -> MessageRecord:
        try:
            request_id = canonical_message_id(to)
            request = self._sent.get(request_id) or await self._store.get(request_id)
        except (InvalidContent, NotFound):
            request = None
        if request is None or request.kind is not MessageKind.REQUEST:
            raise NotFound(
                f"To={to!r} names no request on the bus; copy ReplyTo from the request",
                to=to,
            )
        return request

    async def _journal_and_publish(self, new: NewMessage, direction: Direction) -> MessageRecord:
        began = time.perf_counter()
        result = await self._store.accept(new, at=self._ctx.clock.now(), actor=new.sender)
        metrics.observe_stage(Stage.JOURNAL, time.perf_counter() - began)
        return await self._publish(new, result, direction)

    async def _publish(
        self, new: NewMessage, result: AcceptResult, direction: Direction
    ) -> MessageRecord:
        """Publish what ``result`` journaled, then journal it QUEUED; a duplicate that
        was queued before is not published again."""
        record = result.record
        labels = (new.message_type, new.sender, new.recipient)
        if result.outcome is AcceptOutcome.DUPLICATE and (
            record.state is not MessageState.ACCEPTED or record.message_id in self._marks
        ):
            log.info("duplicate_submission", message_id=new.message_id, state=str(record.state))
            metrics.count_message(*labels, MessageOutcome.DUPLICATE)
            return self._as_queued(record)
        # New, or journaled but not yet queued (the first attempt died before publishing).
        self._sent.keep(record)  # as journaled: a push provider may answer any moment
        if record.kind is MessageKind.REQUEST:
            self._holds.release(record.recipient)
        self._marks.publishing(record.message_id)
        began = time.perf_counter()
        try:
            await self._transport.publish(direction, new.recipient, queued(new, new.xml))
        except BaseException:
            self._marks.discard(record.message_id)
            raise
        metrics.observe_stage(Stage.PUBLISH, time.perf_counter() - began)
        metrics.count_message(*labels, MessageOutcome.ACCEPTED)
        # The broker has it: QUEUED, journaled later unless handed out first (marks.py).
        if self._marks.published(record, f"to {direction}.{new.recipient}"):
            return self._as_queued(record)
        return await self._store.get(record.message_id)  # handed out meanwhile: as it is now

    async def _hand_over(
        self, hand: HandOver, new: NewMessage, data: m.ResponseData, request: MessageRecord
    ) -> None:
        """Hand a response just journaled to its consumer's intake in this process; its
        answer may wait for the take's write (:mod:`gateway.router.holds`)."""
        metrics.count_message(new.message_type, new.sender, new.recipient, MessageOutcome.ACCEPTED)
        delivery = HandedOver(queued(new, new.xml), self._transport, new.recipient)
        at_most = hand(delivery, PushedReply(uuid.UUID(request.message_id), data.element))
        await self._holds.hold(new.sender, delivery.answerable, at_most)

    def _as_queued(self, record: MessageRecord) -> MessageRecord:
        """``record`` as its sender is told: QUEUED once published, even while the
        journal still says ACCEPTED (its mark pending, :mod:`gateway.router.marks`)."""
        if record.state is not MessageState.ACCEPTED:
            return record
        return dataclasses.replace(
            record, state=MessageState.QUEUED, updated_at=self._ctx.clock.now()
        )

    def _signed_send_result(
        self, name: str, record: MessageRecord, sender: Participant, recipient: Participant
    ) -> etree._Element:
        meta = metadata(record, sender, recipient, record.updated_at)
        build = (
            m.build_send_request_response
            if name == "SendRequestResponse"
            else (m.build_send_response_response)
        )
        return sign_element(build(meta), self._ctx.bus_signer, "SMEVSignature")

    async def get_status(self, body: etree._Element, caller: Participant) -> etree._Element:
        """The caller's next status notice, signed by the bus; a signed GetStatus is
        served once, like a pull."""
        timestamp = read_get_status(body)
        check_timestamp(
            timestamp, self._ctx.clock.now(), self._ctx.time_policy, what="GetStatus Timestamp"
        )
        await self._replays.admit_once(body, caller, "GetStatus", timestamp)
        notice = await self._statuses.next(caller)
        reply = m.build_get_status_response(notice)
        if notice is None:
            return reply
        message = reply.find(f"{{{SMEV_TYPES}}}SmevAsyncProcessingMessage")
        assert message is not None  # built just above
        sign_element(message, self._ctx.bus_signer, "SMEVSignature")
        return reply

    async def queue_statistics(self, body: etree._Element, caller: Participant) -> etree._Element:
        """Messages waiting in the caller's request and response queues."""
        timestamp, _node = read_get_incoming_queue_statistics(body)
        check_timestamp(
            timestamp,
            self._ctx.clock.now(),
            self._ctx.time_policy,
            what="GetIncomingQueueStatistics Timestamp",
        )
        return m.build_get_incoming_queue_statistics_response(
            [
                m.QueueStatistic(
                    f"{direction}.{caller.mnemonic}",
                    await self._transport.depth(direction, caller.mnemonic),
                )
                for direction in (Direction.REQUESTS, Direction.RESPONSES)
            ]
        )
