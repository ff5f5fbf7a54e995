"""The adapter loop: take a request, ask the agency, answer on the bus, then ack.

One request (:meth:`AdapterRunner.process`)::

    delivered (bus + consumer signatures already verified by the client)
      -> message type handled?        no  -> Reject UNKNOWN_REQUEST_DESCRIPTION
      -> request content valid (XSD)? no  -> Reject INVALID_REQUEST
      -> handler(content, context)    AgencyUnavailable/timeout -> retry with backoff,
                                          then Reject AGENCY_UNAVAILABLE
                                      AgencyError -> Reject FAILURE
                                      any other exception -> logged, Reject FAILURE
      -> response content valid?      no  -> logged (adapter bug), Reject FAILURE
      -> SendResponse (signed by the client with the agency's key)
      -> Ack, only once SendResponse was accepted

Idempotent on redelivery: the prepared answer and its response MessageID are kept per
request until the request is acked, so a redelivered request (the ack was lost, or
SendResponse failed transiently) is answered with identical content under the same
MessageID, which the bus deduplicates; the agency is not asked twice. A transient
failure of SendResponse leaves the request unacked: the bus hands it out again after
its visibility timeout, and after its delivery limit it is dead-lettered (journaled),
never dropped. A bus refusal of the content itself (schema) is answered with a
``FAILURE`` rejection instead.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

import structlog
from lxml import etree

from adapters.sdk.adapter import (
    Adapter,
    AgencyError,
    AgencyUnavailable,
    Answer,
    Handler,
    Processing,
    Reject,
    RequestContext,
)
from adapters.sdk.metrics import AdapterMetrics, NoMetrics, safely
from adapters.sdk.native_calls import unreachable_reason
from adapters.sdk.policies import PollPolicy, RetryPolicy, Sleep
from adapters.sdk.sources import InboundRequest, PullSource, RequestSource
from gateway import request_id as request_ids
from gateway.client.participant import ParticipantClient
from gateway.core.envelope import RejectionCode
from gateway.core.errors import MessageAlreadySent, SchemaViolation, SmevbusError
from gateway.crypto.certificates import common_name
from gateway.ops.metrics import AgencyOutcome
from gateway.xml import messages as m
from gateway.xml.readers import read_request_data
from gateway.xml.schema import TypeCatalog, type_catalog

log = structlog.get_logger(__name__)

MAX_DESCRIPTION = 4000
"""RejectionReasonDescription is a string-4000 in the bus schema."""
#: Bus refusals that are about the answer's content: answered with a FAILURE instead.
_CONTENT_REFUSALS = frozenset({"schema_violation", "invalid_content", "message_too_large"})
#: SendResponse tries while the bus is unreachable that push mode makes (with
#: :data:`BUS_BACKOFF` between them: about a minute) before leaving the request unsettled.
BUS_UNREACHABLE_ATTEMPTS = 10
BUS_BACKOFF = PollPolicy()


class OutcomeKind(StrEnum):
    ANSWERED = "answered"
    """Response content was accepted by the bus."""
    REJECTED = "rejected"
    PROCESSING = "processing"
    UNSETTLED = "unsettled"
    """Nothing was accepted by the bus: the request stays unacked and comes back."""


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    request_id: str
    message_type: str
    response_id: str | None = None
    code: RejectionCode | None = None
    """The rejection code, for ``REJECTED``."""
    attempts: int = 0
    """Handler calls made for this delivery (0 when a kept answer was resent)."""
    acked: bool = False
    resent: bool = False
    """The answer was prepared for an earlier delivery of the same request."""


@dataclass(frozen=True, eq=False)
class _Prepared:
    """An answer ready to send, and the MessageID it is sent under (kept for resends)."""

    response_id: uuid.UUID
    message_type: str
    content: etree._Element | None = None
    rejection: m.Rejection | None = None
    status: m.AsyncStatus | None = None

    @property
    def kind(self) -> OutcomeKind:
        if self.content is not None:
            return OutcomeKind.ANSWERED
        return OutcomeKind.REJECTED if self.rejection is not None else OutcomeKind.PROCESSING


def _outcome_of(answer: Answer) -> AgencyOutcome:
    """How the agency's call ended, by what its handler returned (as the KPIs class it)."""
    if not isinstance(answer, Reject):
        return AgencyOutcome.ANSWERED
    if answer.code is RejectionCode.AGENCY_UNAVAILABLE:
        return AgencyOutcome.UNAVAILABLE
    return AgencyOutcome.REJECTED


class AdapterRunner:
    """Runs one :class:`Adapter` against the bus as the participant ``client`` signs for."""

    def __init__(
        self,
        adapter: Adapter,
        client: ParticipantClient,
        *,
        source: RequestSource | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        metrics: AdapterMetrics | None = None,
        catalog: TypeCatalog | None = None,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.perf_counter,
        participant: str | None = None,
        max_remembered: int = 10_000,
        bus_unreachable_attempts: int = 1,
    ) -> None:
        self.adapter = adapter
        self.client = client
        self.source: RequestSource = source or PullSource(client)
        self.retry = retry or RetryPolicy()
        self.poll = poll or PollPolicy()
        self.metrics: AdapterMetrics = metrics or NoMetrics()
        self.catalog = catalog or type_catalog()
        self.participant = participant or common_name(client.signer.certificate) or adapter.name
        self._handlers: dict[str, Handler] = dict(adapter.handlers())
        self._sleep = sleep
        self._monotonic = monotonic
        self._answers: OrderedDict[str, _Prepared] = OrderedDict()
        self._max_remembered = max_remembered
        self.bus_unreachable_attempts = bus_unreachable_attempts
        self._stopping = asyncio.Event()

    @property
    def message_types(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    # --- the loop --------------------------------------------------------------------

    async def run_once(self) -> Outcome | None:
        """Take one request and settle it; None if there was none."""
        inbound = await self.source.next()
        return None if inbound is None else await self.process(inbound)

    async def run_forever(self) -> None:
        """Poll until :meth:`stop`; the request in hand is always finished first.

        A stopped runner stays stopped (a :meth:`stop` before the loop starts counts).
        """
        idle = 0
        log.info("adapter_started", adapter=self.adapter.name, participant=self.participant)
        while not self._stopping.is_set():
            try:
                outcome = await self.run_once()
            except Exception as exc:  # the bus unreachable, or a reply failing verification
                log.warning("poll_failed", participant=self.participant, error=str(exc))
                outcome = None
            if outcome is not None:
                idle = 0
                continue
            idle += 1
            await self._pause(self.poll.delay(idle))
        log.info("adapter_stopped", adapter=self.adapter.name, participant=self.participant)

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return once the request in hand is settled."""
        self._stopping.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` with the injected sleep, or less if :meth:`stop` is called."""
        sleeping = asyncio.ensure_future(self._sleep(seconds))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, stopping):
                task.cancel()
            await asyncio.gather(sleeping, stopping, return_exceptions=True)

    # --- one request -----------------------------------------------------------------

    async def process(self, inbound: InboundRequest) -> Outcome:
        """Answer one delivered request and ack it once the answer is accepted."""
        delivery = inbound.delivery
        request_id = str(delivery.metadata.message_id)
        with (
            structlog.contextvars.bound_contextvars(
                message_id=request_id,
                participant=self.participant,
                message_type=delivery.metadata.message_type,
            ),
            # Its SendResponse carries the id on (a new one if the request came without).
            request_ids.bound(inbound.request_id or request_ids.new()),
        ):
            started = self._monotonic()
            prepared = self._answers.get(request_id)
            resent, attempts = prepared is not None, 0
            if prepared is None:
                prepared, attempts = await self._prepare(delivery)
                self._remember(request_id, prepared)
            else:
                log.info("resending_kept_answer", response_id=str(prepared.response_id))
            outcome = await self._settle(inbound, request_id, prepared, attempts, resent)
            mt = outcome.message_type
            safely(self.metrics.handled, mt, str(outcome.kind))
            if outcome.code is not None:
                safely(self.metrics.rejected, mt, str(outcome.code))
            safely(self.metrics.observe_latency, mt, self._monotonic() - started)
            log.info(
                "request_settled",
                outcome=str(outcome.kind),
                code=None if outcome.code is None else str(outcome.code),
                response_id=outcome.response_id,
                attempts=outcome.attempts,
                acked=outcome.acked,
            )
            return outcome

    async def send_answer(self, context: RequestContext, answer: Answer) -> Outcome:
        """Send a later answer (e.g. the final one after :class:`Processing`); no ack."""
        prepared = self._check_answer(answer, context.message_type)
        return await self._send(context.reply_to, str(context.message_id), prepared, 0, False)

    async def _prepare(self, delivery: m.RequestDelivery) -> tuple[_Prepared, int]:
        message_type = delivery.metadata.message_type
        try:
            data = read_request_data(delivery.request_data)
        except SmevbusError as exc:
            return self._reject(message_type, RejectionCode.INVALID_REQUEST, exc.message), 0
        message_type = etree.QName(data.content).namespace or ""
        handler = self._handlers.get(message_type)
        if handler is None:
            log.warning("unknown_message_type", message_type=message_type)
            reason = f"{self.adapter.name} does not answer message type {message_type!r}"
            return self._reject(message_type, RejectionCode.UNKNOWN_REQUEST_DESCRIPTION, reason), 0
        try:
            self.catalog.validate(data.content, expect="request")
        except SchemaViolation as exc:
            log.info("request_invalid", error=exc.message)
            return self._reject(message_type, RejectionCode.INVALID_REQUEST, exc.message), 0
        context = RequestContext(
            message_id=data.message_id,
            reply_to=delivery.reply_to,
            sender=delivery.metadata.sender.mnemonic,
            message_type=message_type,
            test=data.test,
            eol=data.eol,
        )
        answer, attempts = await self._call(handler, data.content, context)
        return self._check_answer(answer, message_type), attempts

    async def _call(
        self, handler: Handler, content: etree._Element, context: RequestContext
    ) -> tuple[Answer, int]:
        """The handler's answer with retries while the agency is unavailable; the
        metrics hear of every attempt and of how the call ended."""
        started = self._monotonic()
        answer, attempts, outcome = await self._attempts(handler, content, context)
        safely(
            self.metrics.agency_answered, context.message_type, outcome, self._monotonic() - started
        )
        return answer, attempts

    async def _attempts(
        self, handler: Handler, content: etree._Element, context: RequestContext
    ) -> tuple[Answer, int, AgencyOutcome]:
        policy, mt = self.retry, context.message_type
        reason, outcome = "unknown", AgencyOutcome.UNAVAILABLE
        for attempt in range(1, policy.attempts + 1):
            began = self._monotonic()
            try:
                async with asyncio.timeout(policy.call_timeout):
                    answer = await handler(copy.deepcopy(content), context)
                return answer, attempt, _outcome_of(answer)
            except AgencyUnavailable as exc:
                reason, outcome = exc.message, AgencyOutcome.UNAVAILABLE
            except AgencyError as exc:
                log.warning("agency_error", error=exc.message, attempt=attempt)
                failed = Reject(RejectionCode.FAILURE, f"the agency failed: {exc.message}")
                return failed, attempt, AgencyOutcome.REJECTED
            except TimeoutError:
                reason = f"no answer within {policy.call_timeout} s"
                outcome = AgencyOutcome.TIMED_OUT
            except Exception as exc:
                unreachable = unreachable_reason(exc)
                if unreachable is None:
                    log.exception("adapter_failed", adapter=self.adapter.name, attempt=attempt)
                    safely(self.metrics.failed, mt, "adapter_error")
                    description = (
                        f"the {self.adapter.name} adapter failed ({type(exc).__name__}); "
                        f"its operators can find request {context.message_id} in its log"
                    )
                    return (
                        Reject(RejectionCode.FAILURE, description),
                        attempt,
                        AgencyOutcome.REJECTED,
                    )
                reason, outcome = unreachable, AgencyOutcome.UNAVAILABLE
            finally:
                safely(self.metrics.agency_call, mt, self._monotonic() - began)
            log.warning("agency_unavailable", reason=reason, attempt=attempt)
            if attempt < policy.attempts:
                safely(self.metrics.retried, mt)
                await self._sleep(policy.delay(attempt))
        description = f"the agency did not answer after {policy.attempts} attempt(s): {reason}"
        return Reject(RejectionCode.AGENCY_UNAVAILABLE, description), policy.attempts, outcome

    def _check_answer(self, answer: Answer, message_type: str) -> _Prepared:
        if isinstance(answer, Reject):
            return self._reject(message_type, answer.code, answer.description)
        if isinstance(answer, Processing):
            status = m.AsyncStatus(answer.category, answer.details)
            return _Prepared(self.client.ids.new(), message_type, status=status)
        if not isinstance(answer, etree._Element):
            problem = f"handler returned {type(answer).__name__}, not an element/Reject/Processing"
        else:
            try:
                if self.catalog.validate(answer, expect="response").namespace == message_type:
                    return _Prepared(self.client.ids.new(), message_type, content=answer)
                problem = f"response is of type {etree.QName(answer).namespace}"
            except SchemaViolation as exc:
                problem = exc.message
        log.error("response_invalid", adapter=self.adapter.name, error=problem)
        safely(self.metrics.failed, message_type, "response_invalid")
        return self._reject(
            message_type,
            RejectionCode.FAILURE,
            f"the {self.adapter.name} adapter produced an invalid response: {problem}",
        )

    def _reject(self, message_type: str, code: RejectionCode, description: str) -> _Prepared:
        text = (description.strip() or str(code))[:MAX_DESCRIPTION]
        return _Prepared(self.client.ids.new(), message_type, rejection=m.Rejection(code, text))

    async def _settle(
        self,
        inbound: InboundRequest,
        request_id: str,
        prepared: _Prepared,
        attempts: int,
        resent: bool,
    ) -> Outcome:
        reply_to = inbound.delivery.reply_to
        outcome = await self._send(reply_to, request_id, prepared, attempts, resent)
        if outcome.kind is OutcomeKind.UNSETTLED:
            return outcome
        try:
            await inbound.ack()
        except Exception as exc:  # lapsed or lost: the redelivery resends the kept answer
            log.warning("ack_failed", error=str(exc))
            return outcome
        self._answers.pop(request_id, None)
        return replace(outcome, acked=True)

    async def _send(
        self, reply_to: str, request_id: str, prepared: _Prepared, attempts: int, resent: bool
    ) -> Outcome:
        """SendResponse; on a content refusal by the bus, once more as a FAILURE rejection.

        While the bus cannot be reached (connection refused or cut: the gateway is
        restarting), the request is held and SendResponse tried up to
        ``bus_unreachable_attempts`` times with :data:`BUS_BACKOFF` (push mode: releasing
        it would count each try towards the queue's delivery limit and dead-letter a
        request nobody refused).
        """
        tried = 0
        while True:
            tried += 1
            try:
                await self._send_response(reply_to, prepared)
            except Exception as exc:
                if isinstance(exc, MessageAlreadySent):
                    # An earlier try of this answer got there, or the request was
                    # answered already (this was a redundant copy of it): either way
                    # the bus has its answer, and the request is settled.
                    log.info(
                        "answer_already_on_the_bus",
                        response_id=str(prepared.response_id),
                        detail=exc.message,
                    )
                    break
                if (
                    unreachable_reason(exc) is not None
                    and tried < self.bus_unreachable_attempts
                    and not self._stopping.is_set()
                ):
                    log.warning("bus_unreachable", error=str(exc), attempt=tried)
                    await self._pause(BUS_BACKOFF.delay(tried))
                    continue
                return await self._refused(exc, reply_to, request_id, prepared, attempts, resent)
            break
        return Outcome(
            prepared.kind,
            request_id,
            prepared.message_type,
            response_id=str(prepared.response_id),
            code=None if prepared.rejection is None else RejectionCode(prepared.rejection.code),
            attempts=attempts,
            resent=resent,
        )

    async def _refused(
        self,
        exc: Exception,
        reply_to: str,
        request_id: str,
        prepared: _Prepared,
        attempts: int,
        resent: bool,
    ) -> Outcome:
        code = exc.code if isinstance(exc, SmevbusError) else None
        log.warning("send_response_failed", error=str(exc), code=code)
        if code not in _CONTENT_REFUSALS or prepared.rejection is not None:
            # Transient (bus down, quota), or nothing better to send: leave it unacked.
            safely(self.metrics.failed, prepared.message_type, "send_response_failed")
            return Outcome(
                OutcomeKind.UNSETTLED, request_id, prepared.message_type, attempts=attempts
            )
        fallback = self._reject(
            prepared.message_type,
            RejectionCode.FAILURE,
            f"the bus refused the {self.adapter.name} adapter's answer: {exc}",
        )
        self._remember(request_id, fallback)
        return await self._send(reply_to, request_id, fallback, attempts, resent)

    async def _send_response(self, reply_to: str, prepared: _Prepared) -> None:
        await self.client.send_response(
            reply_to,
            content=prepared.content,
            rejections=() if prepared.rejection is None else (prepared.rejection,),
            status=prepared.status,
            message_id=prepared.response_id,
        )

    def _remember(self, request_id: str, prepared: _Prepared) -> None:
        self._answers[request_id] = prepared
        self._answers.move_to_end(request_id)
        while len(self._answers) > self._max_remembered:
            self._answers.popitem(last=False)
