"""The aggregator process: send each part's request, correlate replies, persist, finish.

:class:`Aggregator` drives the pure scatter-gather state of
:mod:`gateway.core.aggregation` over the bus and the
:class:`~gateway.store.base.ServiceRequests`:

* :meth:`Aggregator.submit` resolves the service (``NotFound``), builds and
  XSD-validates *every* part's request from the applicant data before anything is
  sent (``ApplicantDataInvalid`` / ``SchemaViolation``), creates the record
  (idempotent per ``(participant, idempotency_key)``: a retry gets the existing record
  and sends nothing) and then sends one signed ``SendRequest`` per part.
* :meth:`Aggregator.apply_reply` takes one reply, as the portal's reply subscription
  (:class:`~gateway.aggregator.replies.ReplyIntake`) hands it over, correlates it by
  its ``OriginalMessageId``
  (:meth:`~gateway.store.base.ServiceRequests.by_message`, or the record this process
  keeps from its own last save: :mod:`gateway.aggregator.open_requests`), applies it
  (:func:`gateway.aggregator.responses.apply_event`) and hands the new state to the
  intake's ``take`` (:class:`TakeReply`): the router journals the reply done and the
  store saves the service request in one write
  (:meth:`~gateway.store.base.Journal.take_reply`), and the reply is acked on the
  transport only after it (replies that waited for their turn at one request are saved
  together: :mod:`gateway.aggregator.reply_turns`). A crash before the write
  redelivers the reply; a copy redelivered after it changes nothing (the first
  outcome of a part stands) and is dropped as redundant. A reply that changes
  nothing (a request already final: logged as ``late_reply``; a part answered
  already) is only journaled.
* :meth:`Aggregator.fire_deadlines` applies
  :func:`~gateway.core.aggregation.on_deadline` to every pending request due now.
* A request may name a ``callback_url``: the store keeps it and marks the callback due
  in the same save that makes the request final; the
  :class:`~gateway.aggregator.callbacks.CallbackDispatcher` POSTs it. Nothing here waits
  for a callback, so a failing one can never hold up or change a result.
* :meth:`Aggregator.resume` counts the pending requests after a restart: their state
  and deadlines live in the store, and replies wait in the broker's queue, so nothing
  else is needed.

The class starts no background task: the bus (:mod:`gateway.bus`) runs the reply
subscriptions and a ``fire_deadlines`` loop; a test calls them itself, which keeps it
deterministic under a ``FakeClock``.

**Concurrency.** Every write is a compare-and-set on the record's version. On
:class:`~gateway.store.service_requests.ServiceRequestConflict` (another aggregator
process saved first) the record is re-read and the *event* is applied again to the
fresh state, so two processes side by side never lose each other's changes.

**Correlation before sending.** Each part's MessageID is chosen (UUID v1 from the
portal client's id source) and recorded with ``on_sent`` in the state that
:meth:`ServiceRequests.create` stores, which links the MessageIDs in the same
transaction. So by the time a request is on the bus its reply is already
correlatable, by this or any other aggregator process. What can be done before that
is done while the create waits on the database: each part's ``SendRequest`` is built,
signed and checked (:meth:`BusConsumer.prepare_request`), and sent once the create
returns. A part whose ``SendRequest``
fails (the bus refuses it, or the transport is down) is recorded as rejected with
code ``SEND_FAILED`` rather than left to time out (a required part fails the request
fast). If the process dies between ``create`` and the sends, the portal's retry under
the same ``Idempotency-Key`` sends every still-pending part again under its recorded
MessageID (the bus deduplicates); without a retry the unsent parts time out at their
deadlines.

**Who signs.** The portal calls the REST API authenticated by a token mapped to a
registered participant; it does not hold an XML signing key or speak SOAP. The
gateway therefore signs each part's ``SendRequest`` on the portal's behalf with that
participant's key, held server-side (``clients(participant)`` returns a
:class:`BusConsumer` (the sending side) with it: in the gateway a
:class:`~gateway.router.local.LocalParticipant`, which skips the SOAP round trip the
gateway would make to itself; any :class:`~gateway.client.participant.ParticipantClient`
does too): one service request
fans out into several bus messages whose content the gateway builds from the
applicant JSON, so there is nothing the portal could have pre-signed. The bus still
checks that signature like any other, and the journal names the portal as sender.
Participants that want to sign themselves use the SOAP endpoint directly. A
participant served by the aggregator should not also pull its responses over SOAP:
its reply subscription acks (and logs as ``uncorrelated_reply``) any response it
cannot correlate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import structlog
from lxml import etree

from gateway.aggregator.callback_url import check_callback_url
from gateway.aggregator.open_requests import OpenRequests
from gateway.aggregator.reply_turns import MAX_SAVE_ATTEMPTS, ReplyTurns, TakeReply
from gateway.aggregator.requests_builder import build_request
from gateway.aggregator.responses import to_event
from gateway.core.aggregation import (
    Effect,
    Outcome,
    PartStatus,
    ServiceRequestState,
    new_service_request,
    on_cancel,
    on_deadline,
    on_rejection,
    on_sent,
)
from gateway.core.catalogue import Catalogue
from gateway.core.clock import Clock, MessageIdSource
from gateway.core.envelope import MessageMetadata
from gateway.core.errors import (
    IdempotencyKeyReused,
    MessageAlreadySent,
    NotFound,
    SchemaViolation,
    SmevbusError,
)
from gateway.core.faults import fault_of
from gateway.core.idempotency import request_digest
from gateway.core.registry import Registry
from gateway.ops import metrics
from gateway.store.base import ServiceRequests
from gateway.store.service_requests import (
    ServiceRequestConflict,
    ServiceRequestPage,
    ServiceRequestRecord,
)
from gateway.xml.readers import read_response_data

__all__ = ["SEND_FAILED", "Aggregator", "BusConsumer", "TakeReply"]

log = structlog.get_logger(__name__)

#: Rejection code recorded for a part whose SendRequest did not reach the bus.
SEND_FAILED: Final = "SEND_FAILED"


#: A SendRequest made ready to go: awaited, it sends.
Send = Callable[[], Awaitable[MessageMetadata]]


class BusConsumer(Protocol):
    """The consumer's side of the bus the aggregator needs, for one participant."""

    ids: MessageIdSource

    def prepare_request(self, content: etree._Element, *, message_id: uuid.UUID) -> Send:
        """A SendRequest of ``content`` built and signed (what can be done before the
        service request is stored); awaiting the result sends it."""
        ...


class Aggregator:
    """Scatter-gather of service requests over the bus, persisted in the store."""

    def __init__(
        self,
        *,
        catalogue: Catalogue,
        registry: Registry,
        store: ServiceRequests,
        clients: Callable[[str], BusConsumer],
        clock: Clock,
        ids: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.catalogue = catalogue
        self.registry = registry
        self.store = store
        self.clients = clients
        self.clock = clock
        self.ids = ids
        #: Set whenever this aggregator saves a request as final: the callback
        #: dispatcher waits on it instead of only polling.
        self.finalized = asyncio.Event()
        #: Set by a process that posts callbacks as soon as they are due (the bus's
        #: callback loop): the reply that makes a request final then claims its
        #: callback for this process in the same write, for this long, and the record
        #: waits in :meth:`claimed_callbacks`; no claim statement is needed.
        self.callback_lease: timedelta | None = None
        self._claimed: list[ServiceRequestRecord] = []
        #: What lets go the held answers of each claimed request's replies.
        self._answers: dict[uuid.UUID, Callable[[], None]] = {}
        self._open = OpenRequests()
        self._turns = ReplyTurns(
            clock=clock,
            current=self._current,
            reread=store.get,
            saved=self._kept_reply,
            claim_until=self._claim_until,
        )

    @property
    def reply_gather(self) -> timedelta:
        """How long a reply that leaves its request unfinished waits for the request's
        other replies, to be saved with them (:mod:`gateway.aggregator.reply_turns`);
        set by the process that consumes replies as they come, zero by default."""
        return timedelta(seconds=self._turns.gather)

    @reply_gather.setter
    def reply_gather(self, window: timedelta) -> None:
        self._turns.gather = window.total_seconds()

    # --- portal operations ------------------------------------------------------------

    async def submit(
        self,
        *,
        service: str,
        applicant: dict[str, Any],
        participant: str,
        idempotency_key: str | None = None,
        deadline_s: float | None = None,
        callback_url: str | None = None,
    ) -> tuple[ServiceRequestRecord, bool]:
        """Create and send a service request; ``(record, True)`` when newly created.

        Raises ``NotFound`` (unknown service), ``AccessDenied`` (the registry does not
        let ``participant`` request every part's message type) and ``SchemaViolation`` /
        ``ApplicantDataInvalid`` (bad applicant data, ``deadline_s`` or ``callback_url``;
        the API also checks the latter against the allowed hosts) before anything is
        stored or sent. A repeated ``idempotency_key`` returns the existing record with
        ``False`` and sends nothing new, when the body is the same
        (:func:`~gateway.core.idempotency.request_digest`); with another body it raises
        ``IdempotencyKeyReused``.
        """
        svc = self.catalogue.get(service)
        self.registry.authorize_requests(participant, (part.message_type for part in svc.parts))
        if deadline_s is not None and not deadline_s > 0:
            raise SchemaViolation(
                f"deadline_s must be a positive number of seconds, got {deadline_s}",
                field="deadline_s",
            )
        if callback_url is not None:
            check_callback_url(callback_url)
        contents = [(part.id, build_request(svc, part, applicant)) for part in svc.parts]
        client = self.clients(participant)
        now = self.clock.now()
        state = new_service_request(uuid.UUID(self.ids()), svc, now)
        if deadline_s is not None:
            state = _with_deadline(state, timedelta(seconds=deadline_s))
        message_ids: dict[str, uuid.UUID] = {}
        for part_id, _ in contents:
            message_ids[part_id] = client.ids.new()
            state = on_sent(state, part_id, message_ids[part_id], now)
        digest = request_digest(
            service=service, applicant=applicant, callback_url=callback_url, deadline_s=deadline_s
        )
        # The parts are built and signed while the store creates the request (this task
        # runs once the create waits on the database); none is sent before it is stored.
        preparing = asyncio.get_running_loop().create_task(
            _prepare_all(client, contents, message_ids)
        )
        try:
            record, created = await self.store.create(
                state,
                participant,
                idempotency_key,
                callback_url=callback_url,
                request_digest=digest,
            )
        except BaseException:
            preparing.cancel()
            raise
        sends = await preparing
        if created:
            self._open.keep(record)
        else:
            log.info(
                "service_request_exists",
                service_request_id=str(record.id),
                idempotency_key=idempotency_key,
            )
            if not _same_request(record, service, digest):
                raise IdempotencyKeyReused(
                    f"this Idempotency-Key was already used for another request (service "
                    f"request {record.id}); send a new request under a new key",
                    field="Idempotency-Key",
                    id=str(record.id),
                )
            if not record.state.final:
                record = await self._resend_pending(record, client, dict(contents))
            return record, False
        log.info(
            "service_request_created",
            service_request_id=str(record.id),
            service=service,
            participant=participant,
        )
        # The parts go out together: their journal writes and broker confirms overlap.
        with structlog.contextvars.bound_contextvars(service_request_id=str(record.id)):
            sent = await asyncio.gather(
                *(self._send(record, p, message_ids[p], sends[p]) for p, _ in contents)
            )
        if any(after is not record for after in sent):  # a failed send saved a rejection
            record = await self.store.get(record.id)
        return record, True

    async def get(self, id: str) -> ServiceRequestRecord:
        return await self.store.get(id)

    async def find(self, **filters: Any) -> ServiceRequestPage:
        return await self.store.find(**filters)

    async def cancel(self, id: str, participant: str) -> ServiceRequestRecord:
        """Cancel a pending request of ``participant``; a final one is returned unchanged."""
        record = await self.store.get(id)
        if record.participant != participant:
            raise NotFound(f"no service request {id}", service_request_id=id)
        now = self.clock.now()
        record, outcome = await self._update(record, lambda s: on_cancel(s, now))
        if outcome.became_final:
            log.info("service_request_cancelled", service_request_id=str(record.id))
        return record

    # --- the caller's loop ------------------------------------------------------------

    async def fire_deadlines(self) -> int:
        """Apply ``on_deadline`` to every pending request due now; how many changed."""
        now = self.clock.now()
        seen: set[uuid.UUID] = set()
        changed = 0
        while True:
            due = [r for r in await self.store.pending_due(now) if r.id not in seen]
            if not due:
                return changed
            for record in due:
                seen.add(record.id)
                record, outcome = await self._update(record, lambda s: on_deadline(s, now))
                if outcome.effect is Effect.APPLIED:
                    changed += 1
                if outcome.became_final:
                    log.info(
                        "service_request_final",
                        service_request_id=str(record.id),
                        status=record.status.value,
                        completed_by=_value(record),
                    )

    async def resume(self) -> int:
        """After a restart: how many requests are pending (their deadlines are stored)."""
        pending = await self.store.pending()
        log.info("aggregator_resumed", pending=len(pending))
        return len(pending)

    # --- internals --------------------------------------------------------------------

    async def _resend_pending(
        self,
        record: ServiceRequestRecord,
        client: BusConsumer,
        contents: dict[str, etree._Element],
    ) -> ServiceRequestRecord:
        """A retried submit: send every still-pending part again under its MessageID.

        The first submit may have died between ``create`` and its sends (its caller saw
        the failure and retried): without this those parts would only time out. The bus
        deduplicates by MessageID, so a part that did reach it is not sent twice.
        """
        for part in record.state.parts:
            content = contents.get(part.id)
            if part.status is PartStatus.PENDING and part.message_id and content is not None:
                send = _prepare(client, content, part.message_id)
                record = await self._send(record, part.id, part.message_id, send)
        return record

    async def _send(
        self, record: ServiceRequestRecord, part_id: str, message_id: uuid.UUID, send: Send
    ) -> ServiceRequestRecord:
        try:
            await send()
        except MessageAlreadySent:
            # A resend of a part that is on the bus already (with other signature
            # bytes): the first send stands.
            log.info("part_already_sent", service_request_id=str(record.id), part=part_id)
            return record
        except Exception as exc:  # any failure to hand the request to the bus
            # The portal reads the description: a bus's own failure is "internal",
            # its details (a driver's message) go only to the log.
            fault = fault_of(exc)
            description = f"SendRequest failed ({fault.code}): {fault.message}"
            log.warning(
                "send_failed",
                service_request_id=str(record.id),
                part=part_id,
                message_id=str(message_id),
                error=description,
                exc_info=not isinstance(exc, SmevbusError),
            )
            now = self.clock.now()
            record, _ = await self._update(
                record, lambda s: on_rejection(s, part_id, SEND_FAILED, description, now)
            )
            return record
        log.info(
            "part_sent",
            service_request_id=str(record.id),
            part=part_id,
            message_id=str(message_id),
        )
        return record

    async def apply_reply(
        self, original: uuid.UUID, response_data: etree._Element, take: TakeReply
    ) -> bool:
        """Apply one reply (to request ``original``) to its part and settle it through
        ``take``, which journals the reply done in one write with the service request's
        save; True when it changed the service request. Applying the same reply again
        changes nothing (the first outcome of a part stands): a redelivered reply is
        only journaled, or dropped as the redundant copy it is."""
        link = self._open.link(original)
        if link is None:  # not kept here: the link and the record in one read
            linked = await self.store.by_message(original)
            if linked is None:
                log.warning("uncorrelated_reply", original_message_id=str(original))
                await take(None)
                return False
            link = linked.link
            self._open.keep(linked.record)  # for the reply's turn (unless it is final)
        try:
            event = to_event(read_response_data(response_data))
        except SmevbusError as exc:
            log.warning(
                "unreadable_reply",
                service_request_id=str(link.service_request_id),
                part=link.part_id,
                original_message_id=str(original),
                error=exc.message,
            )
            await take(None)
            return False
        taken = await self._turns.take(link.service_request_id, link.part_id, event, take)
        fields = {
            "service_request_id": str(link.service_request_id),
            "part": link.part_id,
            "original_message_id": str(original),
            "reply": event.kind,
        }
        if taken is None:
            return False  # a redundant copy, dropped by the router
        record, outcome = taken
        if outcome.effect is Effect.LATE:
            log.info("late_reply", status=record.status.value, **fields)
            return False
        if outcome.effect is Effect.NO_CHANGE:
            log.info("reply_ignored", **fields)
            return False
        log.info("reply_applied", **fields)
        if outcome.became_final:
            log.info(
                "service_request_final",
                status=record.status.value,
                completed_by=_value(record),
                **fields,
            )
        return True

    async def _update(
        self,
        record: ServiceRequestRecord,
        event: Callable[[ServiceRequestState], Outcome],
    ) -> tuple[ServiceRequestRecord, Outcome]:
        """Apply ``event`` to ``record`` and save it, re-reading and re-applying on conflict."""
        for _ in range(MAX_SAVE_ATTEMPTS - 1):
            outcome = event(record.state)
            if outcome.state is record.state:
                return record, outcome
            try:
                saved = await self.store.save(outcome.state, record.version, at=self.clock.now())
            except ServiceRequestConflict:
                log.info("save_conflict", service_request_id=str(record.id), version=record.version)
                record = await self.store.get(record.id)
                continue
            return self._saved(saved, outcome)
        outcome = event(record.state)
        if outcome.state is record.state:
            return record, outcome
        saved = await self.store.save(outcome.state, record.version, at=self.clock.now())
        return self._saved(saved, outcome)

    def _saved(
        self, record: ServiceRequestRecord, outcome: Outcome
    ) -> tuple[ServiceRequestRecord, Outcome]:
        self._kept(record, outcome.became_final)
        return record, outcome

    def claimed_callbacks(self) -> list[ServiceRequestRecord]:
        """The requests made final by a reply since the last call, their callbacks
        claimed for this process (:attr:`callback_lease`): for it to POST at once, and
        then to tell :meth:`callbacks_attempted`."""
        claimed, self._claimed = self._claimed, []
        return claimed

    def callbacks_attempted(self, claimed: Sequence[ServiceRequestRecord]) -> None:
        """The first attempts of ``claimed`` callbacks are over: the answers to their
        replies that waited for them go (:mod:`gateway.router.holds`)."""
        for record in claimed:
            answer = self._answers.pop(record.id, None)
            if answer is not None:
                answer()

    def _claim_until(self, now: datetime) -> datetime | None:
        return None if self.callback_lease is None else now + self.callback_lease

    def _kept_reply(
        self, record: ServiceRequestRecord, became_final: bool, answer: Callable[[], None]
    ) -> None:
        """A reply's save: as :meth:`_kept`; a callback it claimed waits for its POST,
        and ``answer`` (the held answers of the replies saved) for that POST's end."""
        callback = record.callback
        if became_final and callback is not None and callback.attempts > 0:
            self._claimed.append(record)  # claimed by this save (the first attempt counted)
            self._answers[record.id] = answer
        else:
            answer()
        self._kept(record, became_final)

    def _kept(self, record: ServiceRequestRecord, became_final: bool) -> None:
        """``record`` was just saved (and made final, if ``became_final``)."""
        self._open.keep(record)
        if became_final:
            self.finalized.set()
            metrics.count_service_request(record.service, record.status.value, _value(record))

    async def _current(self, sr_id: uuid.UUID) -> ServiceRequestRecord:
        """The record as this process last saved or read it, or from the store."""
        return self._open.record(sr_id) or await self.store.get(sr_id)


def _with_deadline(state: ServiceRequestState, deadline: timedelta) -> ServiceRequestState:
    """``state`` with the service deadline ``deadline`` after creation (no part after it)."""
    at = state.created_at + deadline
    parts = tuple(p.model_copy(update={"deadline_at": min(p.deadline_at, at)}) for p in state.parts)
    return state.model_copy(update={"deadline_at": at, "parts": parts})


def _value(record: ServiceRequestRecord) -> str | None:
    return None if record.completed_by is None else record.completed_by.value


def _same_request(record: ServiceRequestRecord, service: str, digest: str) -> bool:
    """Whether a retry under a known Idempotency-Key asks what ``record`` asked. A record
    stored before the digests were kept (migration 0005) compares by service alone."""
    if record.request_digest is None:
        return record.service == service
    return record.request_digest == digest


def _prepare(client: BusConsumer, content: etree._Element, message_id: uuid.UUID) -> Send:
    """``client``'s prepared SendRequest; one that could not be prepared raises when sent,
    so that the part is rejected as any failed send."""
    try:
        return client.prepare_request(content, message_id=message_id)
    except Exception as exc:  # the router's refusal, raised again by the send
        failure = exc

        async def refused() -> MessageMetadata:
            raise failure

        return refused


async def _prepare_all(
    client: BusConsumer,
    contents: list[tuple[str, etree._Element]],
    message_ids: dict[str, uuid.UUID],
) -> dict[str, Send]:
    """Each part's :func:`_prepare`: a coroutine with nothing to await, so that it runs as
    a task while :meth:`Aggregator.submit` waits for the store's create."""
    return {
        part_id: _prepare(client, content, message_ids[part_id]) for part_id, content in contents
    }
