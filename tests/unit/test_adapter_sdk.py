"""The adapter runner against a real in-process bus: ordering, classification, redelivery.

The runner's client talks to the router through :class:`ScriptedCall`, which records
the operations in order and can make one fail before it reaches the bus (the bus never
saw it) or after (the bus did it, the reply was lost).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

import aiohttp
import httpx
import pytest
import structlog
import zeep.exceptions
from lxml import etree
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from adapters.sdk import conformance as kit
from adapters.sdk.adapter import (
    AgencyError,
    AgencyUnavailable,
    Answer,
    Handler,
    Processing,
    RequestContext,
)
from adapters.sdk.metrics import RecordingMetrics
from adapters.sdk.native_calls import agency_call, translate
from adapters.sdk.policies import PollPolicy, RetryPolicy
from adapters.sdk.runner import AdapterRunner, Outcome, OutcomeKind
from gateway.client.participant import ParticipantClient
from gateway.core.envelope import RejectionCode
from gateway.core.errors import InternalError, QuotaExceeded
from gateway.testing.bus import (
    BIRTH,
    BUS,
    Bus,
    birth_request,
    birth_response,
    content,
    open_bus,
)
from gateway.transport.base import Direction
from gateway.transport.topology import QueuePolicy
from gateway.xml import messages as m
from gateway.xml.namespaces import qname
from gateway.xml.readers import read_response_data
from gateway.xml.soap import unwrap_envelope

DEATH = "urn://smevbus/types/zags/death-record/1.0"


class ScriptedCall:
    """The provider's SOAP transport: records operations; fails them when told to."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.ops: list[str] = []
        self.fail_before: dict[str, list[Exception]] = defaultdict(list)
        self.fail_after: dict[str, list[Exception]] = defaultdict(list)

    async def __call__(self, raw: bytes) -> tuple[int, bytes]:
        operation = unwrap_envelope(etree.fromstring(raw))[0]
        self.ops.append(operation)
        if self.fail_before[operation]:
            raise self.fail_before[operation].pop(0)
        result = await self.bus.handle(raw)
        if self.fail_after[operation]:
            raise self.fail_after[operation].pop(0)
        return result


class Agency:
    """A handler whose answers are scripted per call; counts the calls."""

    def __init__(self, *answers: Answer | Exception | Callable[[], Awaitable[Answer]]) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.contexts: list[RequestContext] = []

    async def __call__(self, request: etree._Element, context: RequestContext) -> Answer:
        self.calls += 1
        self.contexts.append(context)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return await answer() if callable(answer) else answer


class TableAdapter:
    name = "test"

    def __init__(self, table: Mapping[str, Handler]) -> None:
        self.table = table

    def handlers(self) -> Mapping[str, Handler]:
        return self.table


class Rig:
    """A runner for ZAGS over :class:`ScriptedCall`, recording sleeps and metrics."""

    def __init__(
        self,
        bus: Bus,
        agency: Agency,
        *,
        table: Mapping[str, Handler] | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        self.bus = bus
        self.agency = agency
        self.call = ScriptedCall(bus)
        self.sleep = kit.RecordingSleep()
        self.metrics = RecordingMetrics()
        client = ParticipantClient(
            signer=bus.pki.signer("ZAGS"),
            verifier=bus.zags.verifier,
            clock=bus.clock,
            call=self.call,
            bus_mnemonic=BUS,
        )
        self.runner = AdapterRunner(
            TableAdapter({BIRTH: agency} if table is None else table),
            client,
            retry=retry or RetryPolicy(attempts=3, delays=(0.5, 2.0)),
            poll=poll,
            metrics=self.metrics,
            sleep=self.sleep,
        )

    async def request(self, business: etree._Element | None = None) -> uuid.UUID:
        sent = await self.bus.portal.send_request(
            business if business is not None else birth_request()
        )
        return sent.message_id

    async def answer_at_portal(self) -> m.ResponseData:
        delivery = await self.bus.portal.get_response()
        assert delivery is not None, "no response reached the portal"
        await self.bus.portal.ack(delivery.metadata.message_id)
        return read_response_data(delivery.response_data)

    async def status(self, message_id: uuid.UUID) -> str:
        return (await self.bus.report(message_id)).status


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


def rejection_of(data: m.ResponseData) -> str:
    assert data.content is None, data
    assert len(data.rejections) == 1, data
    return data.rejections[0].code


# --- ordering ---------------------------------------------------------------------------


async def test_answer_is_sent_and_accepted_before_the_request_is_acked(bus: Bus) -> None:
    rig = Rig(bus, Agency(birth_response()))
    request_id = await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome == Outcome(
        OutcomeKind.ANSWERED,
        str(request_id),
        BIRTH,
        response_id=outcome.response_id if outcome else None,
        attempts=1,
        acked=True,
    )
    assert rig.call.ops == ["GetRequest", "SendResponse", "Ack"]
    data = await rig.answer_at_portal()
    assert data.content is not None
    assert c14n(data.content) == c14n(birth_response())
    assert rig.agency.contexts[0].sender == "PORTAL"
    assert rig.agency.contexts[0].message_id == request_id
    assert rig.metrics.handled_by == {(BIRTH, "answered"): 1}
    assert await rig.runner.run_once() is None


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("bus unreachable"), InternalError("bus restarting"), QuotaExceeded("full")],
    ids=["connect_error", "internal", "quota"],
)
async def test_transient_send_failure_acks_nothing_and_the_retry_resends_the_same_answer(
    bus: Bus, failure: Exception
) -> None:
    rig = Rig(bus, Agency(birth_response()))
    request_id = await rig.request()
    rig.call.fail_before["SendResponse"].append(failure)
    inbound = await rig.runner.source.next()
    assert inbound is not None
    first = await rig.runner.process(inbound)
    assert (first.kind, first.acked) == (OutcomeKind.UNSETTLED, False)
    assert "Ack" not in rig.call.ops
    assert await rig.status(request_id) == "DELIVERED"
    assert rig.metrics.failed_by == {(BIRTH, "send_response_failed"): 1}

    second = await rig.runner.process(inbound)  # the same request again
    assert (second.kind, second.acked, second.resent, second.attempts) == (
        OutcomeKind.ANSWERED,
        True,
        True,
        0,
    )
    assert rig.agency.calls == 1
    assert rig.call.ops[-2:] == ["SendResponse", "Ack"]
    [journaled] = await bus.journal.responses_to(str(request_id))
    assert journaled.message_id == second.response_id


async def test_redelivery_after_the_visibility_timeout_resends_the_kept_answer() -> None:
    bus = await open_bus(policy=QueuePolicy(visibility_timeout=timedelta(milliseconds=50)))
    try:
        rig = Rig(bus, Agency(birth_response()))
        request_id = await rig.request()
        rig.call.fail_before["SendResponse"].append(httpx.ConnectError("bus unreachable"))
        first = await rig.runner.run_once()
        assert first is not None
        assert first.kind is OutcomeKind.UNSETTLED
        lapsed = await asyncio.wait_for(bus.transport.settled.get(), timeout=10)
        assert lapsed.message.message_id == str(request_id)
        bus.transport.policy = QueuePolicy(visibility_timeout=timedelta(minutes=5))

        again = await rig.runner.run_once()
        assert again is not None
        assert (again.kind, again.acked, again.resent) == (OutcomeKind.ANSWERED, True, True)
        assert rig.agency.calls == 1
        assert len(await bus.journal.responses_to(str(request_id))) == 1
        assert (await rig.answer_at_portal()).content is not None
        assert await bus.portal.get_response() is None
    finally:
        await bus.close()


async def test_a_lost_send_response_reply_leaves_one_response_after_redelivery() -> None:
    bus = await open_bus(policy=QueuePolicy(visibility_timeout=timedelta(milliseconds=50)))
    try:
        rig = Rig(bus, Agency(birth_response()))
        request_id = await rig.request()
        rig.call.fail_after["SendResponse"].append(httpx.ReadTimeout("reply lost"))
        first = await rig.runner.run_once()
        assert first is not None
        assert first.kind is OutcomeKind.UNSETTLED
        lapsed = await asyncio.wait_for(bus.transport.settled.get(), timeout=10)
        assert lapsed.message.message_id == str(request_id)
        bus.transport.policy = QueuePolicy(visibility_timeout=timedelta(minutes=5))
        # The bus already has the answer: it settles the copy itself.
        assert await rig.runner.run_once() is None
        assert len(await bus.journal.responses_to(str(request_id))) == 1
        assert (await rig.answer_at_portal()).content is not None
        assert await bus.portal.get_response() is None
    finally:
        await bus.close()


class Copy:
    """A redundant copy of a delivered request, as a push source hands it out."""

    def __init__(self, delivery: m.RequestDelivery) -> None:
        self.delivery = delivery
        self.request_id: str | None = None
        self.acks = 0

    async def ack(self) -> None:
        self.acks += 1


async def test_a_redundant_copy_of_an_answered_request_is_settled_not_answered_twice(
    bus: Bus,
) -> None:
    rig = Rig(bus, Agency(birth_response()))
    request_id = await rig.request()
    delivery = await bus.zags.get_request()
    assert delivery is not None
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    await bus.zags.ack(delivery.metadata.message_id)

    copy = Copy(delivery)  # at-least-once delivery: the same request once more
    outcome = await rig.runner.process(copy)
    assert outcome.acked
    assert copy.acks == 1
    assert len(await bus.journal.responses_to(str(request_id))) == 1


async def test_a_lost_ack_keeps_the_answer_for_the_next_delivery(bus: Bus) -> None:
    rig = Rig(bus, Agency(birth_response()))
    request_id = await rig.request()
    rig.call.fail_before["Ack"].append(httpx.ConnectError("bus unreachable"))
    inbound = await rig.runner.source.next()
    assert inbound is not None
    first = await rig.runner.process(inbound)
    assert (first.kind, first.acked) == (OutcomeKind.ANSWERED, False)
    second = await rig.runner.process(inbound)
    assert second.acked
    assert second.resent
    assert second.response_id == first.response_id
    assert len(await bus.journal.responses_to(str(request_id))) == 1


# --- answers the runner refuses to send as they are -------------------------------------


def broken_birth_response() -> etree._Element:
    response = etree.Element(qname(BIRTH, "BirthRecordResponse"))
    etree.SubElement(response, qname(BIRTH, "BirthRecord"))
    return response


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (broken_birth_response(), "does not match schema"),
        (content("fns-inn.response"), "response is of type urn://smevbus/types/fns/inn/1.0"),
        ("<BirthRecordResponse/>", "handler returned str"),
    ],
    ids=["schema_invalid", "other_type", "not_an_element"],
)
async def test_an_invalid_response_becomes_a_failure_rejection(
    bus: Bus, answer: Answer, problem: str
) -> None:
    rig = Rig(bus, Agency(answer))
    await rig.request()
    with structlog.testing.capture_logs() as logs:
        outcome = await rig.runner.run_once()
    assert outcome is not None
    assert (outcome.kind, outcome.code, outcome.acked) == (
        OutcomeKind.REJECTED,
        RejectionCode.FAILURE,
        True,
    )
    data = await rig.answer_at_portal()
    assert rejection_of(data) == "FAILURE"
    assert problem in data.rejections[0].description
    [event] = [e for e in logs if e["event"] == "response_invalid"]
    assert event["log_level"] == "error"
    assert problem in event["error"]
    assert rig.metrics.failed_by == {(BIRTH, "response_invalid"): 1}


async def test_a_status_the_bus_refuses_is_replaced_by_a_failure_rejection(bus: Bus) -> None:
    rig = Rig(bus, Agency(Processing(category="bogus")))
    request_id = await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert outcome.code is RejectionCode.FAILURE
    assert outcome.acked
    data = await rig.answer_at_portal()
    assert "schema_violation" in data.rejections[0].description
    assert len(await bus.journal.responses_to(str(request_id))) == 1


# --- requests the runner does not pass to the handler -----------------------------------


async def test_an_unhandled_message_type_is_rejected_unknown(bus: Bus) -> None:
    agency = Agency(birth_response())
    rig = Rig(bus, agency, table={DEATH: agency})
    await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert outcome.code is RejectionCode.UNKNOWN_REQUEST_DESCRIPTION
    assert rejection_of(await rig.answer_at_portal()) == "UNKNOWN_REQUEST_DESCRIPTION"
    assert agency.calls == 0


async def test_request_content_failing_its_schema_is_rejected_invalid(bus: Bus) -> None:
    rig = Rig(bus, Agency(birth_response()))
    await rig.request()
    inbound = await rig.runner.source.next()
    assert inbound is not None
    # As if the adapter's XSD were stricter than the bus's: drop a required element.
    born = inbound.delivery.request_data.find(f".//{{{BIRTH}}}BirthDate")
    assert born is not None
    born.getparent().remove(born)  # type: ignore[union-attr]
    outcome = await rig.runner.process(inbound)
    assert outcome.code is RejectionCode.INVALID_REQUEST
    assert outcome.acked
    data = await rig.answer_at_portal()
    assert rejection_of(data) == "INVALID_REQUEST"
    assert "BirthDate" in data.rejections[0].description
    assert rig.agency.calls == 0


# --- agency failures --------------------------------------------------------------------


async def test_an_unavailable_agency_is_retried_with_backoff_then_rejected(bus: Bus) -> None:
    rig = Rig(bus, Agency(AgencyUnavailable("zags: connection refused")))
    await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert (outcome.code, outcome.attempts, outcome.acked) == (
        RejectionCode.AGENCY_UNAVAILABLE,
        3,
        True,
    )
    assert rig.sleep.delays == [0.5, 2.0]
    assert rig.metrics.retried_by == {BIRTH: 2}
    data = await rig.answer_at_portal()
    assert rejection_of(data) == "AGENCY_UNAVAILABLE"
    assert "connection refused" in data.rejections[0].description


async def test_an_agency_back_within_the_retries_is_answered(bus: Bus) -> None:
    down = AgencyUnavailable("down")
    rig = Rig(bus, Agency(down, httpx.ConnectError("refused"), birth_response()))
    await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert (outcome.kind, outcome.attempts) == (OutcomeKind.ANSWERED, 3)
    assert (await rig.answer_at_portal()).content is not None


async def test_an_agency_call_over_the_timeout_counts_as_unavailable(bus: Bus) -> None:
    async def never() -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    retry = RetryPolicy(attempts=2, delays=(1.0,), call_timeout=0.01)
    rig = Rig(bus, Agency(never), retry=retry)
    await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert outcome.code is RejectionCode.AGENCY_UNAVAILABLE
    assert outcome.attempts == 2
    assert "no answer within 0.01 s" in (await rig.answer_at_portal()).rejections[0].description


async def test_an_agency_error_is_a_failure_without_retry(bus: Bus) -> None:
    rig = Rig(bus, Agency(AgencyError("FindBirthRecord: SOAP Fault: registry locked")))
    await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert (outcome.code, outcome.attempts) == (RejectionCode.FAILURE, 1)
    assert rig.sleep.delays == []
    assert "registry locked" in (await rig.answer_at_portal()).rejections[0].description


async def test_a_bug_in_the_adapter_is_logged_and_rejected_as_failure(bus: Bus) -> None:
    rig = Rig(bus, Agency(KeyError("secret-internal-detail")))
    request_id = await rig.request()
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        outcome = await rig.runner.run_once()
    assert outcome is not None
    assert (outcome.code, outcome.attempts) == (RejectionCode.FAILURE, 1)
    [event] = [e for e in logs if e["event"] == "adapter_failed"]
    assert event["log_level"] == "error"
    assert event["exc_info"] is True
    assert event["message_id"] == str(request_id)
    assert event["participant"] == "ZAGS"
    description = (await rig.answer_at_portal()).rejections[0].description
    assert "KeyError" in description
    assert "secret-internal-detail" not in description
    assert rig.metrics.failed_by == {(BIRTH, "adapter_error"): 1}


async def test_processing_status_then_the_final_answer(bus: Bus) -> None:
    agency = Agency(Processing(details="looking in the paper archive"))
    rig = Rig(bus, agency)
    request_id = await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert (outcome.kind, outcome.acked) == (OutcomeKind.PROCESSING, True)
    interim = await rig.answer_at_portal()
    assert interim.status == m.AsyncStatus(
        "underProcessing", "looking in the paper archive", uuid.UUID(str(request_id))
    )

    final = await rig.runner.send_answer(agency.contexts[0], birth_response())
    assert final.kind is OutcomeKind.ANSWERED
    assert (await rig.answer_at_portal()).content is not None
    assert await rig.status(request_id) == "RESPONSE_DELIVERED"


async def test_failing_metrics_never_fail_a_request(bus: Bus) -> None:
    class Broken(RecordingMetrics):
        def handled(self, message_type: str, outcome: str) -> None:
            raise RuntimeError("metrics backend down")

    rig = Rig(bus, Agency(birth_response()))
    rig.runner.metrics = Broken()
    await rig.request()
    outcome = await rig.runner.run_once()
    assert outcome is not None
    assert outcome.kind is OutcomeKind.ANSWERED
    assert outcome.acked


# --- the loop ---------------------------------------------------------------------------


async def test_idle_polling_backs_off_and_stop_ends_the_loop(bus: Bus) -> None:
    rig = Rig(bus, Agency(birth_response()), poll=PollPolicy(interval=0.5, max_interval=3.0))

    def stop_after_five(_: float) -> None:
        if len(rig.sleep.delays) == 5:
            rig.runner.stop()

    rig.sleep.on_sleep = stop_after_five
    await asyncio.wait_for(rig.runner.run_forever(), timeout=10)
    assert rig.sleep.delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert rig.call.ops == ["GetRequest"] * 5


async def test_the_loop_survives_a_bus_outage(bus: Bus) -> None:
    rig = Rig(bus, Agency(birth_response()))
    await rig.request()
    rig.call.fail_before["GetRequest"].append(httpx.ConnectError("bus down"))

    def stop_once_answered(_: float) -> None:
        if "Ack" in rig.call.ops:
            rig.runner.stop()

    rig.sleep.on_sleep = stop_once_answered
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(rig.runner.run_forever(), timeout=10)
    assert rig.call.ops == ["GetRequest", "GetRequest", "SendResponse", "Ack", "GetRequest"]
    assert any(e["event"] == "poll_failed" for e in logs)


async def test_stop_finishes_the_request_in_hand_and_takes_no_more(bus: Bus) -> None:
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow_answer() -> Answer:
        started.set()
        await gate.wait()
        return birth_response()

    rig = Rig(bus, Agency(slow_answer))
    await rig.request()
    await rig.request()
    loop = asyncio.create_task(rig.runner.run_forever())
    await asyncio.wait_for(started.wait(), timeout=10)
    rig.runner.stop()
    gate.set()
    await asyncio.wait_for(loop, timeout=10)
    assert rig.call.ops == ["GetRequest", "SendResponse", "Ack"]
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1


# --- native-call classification ---------------------------------------------------------

_REQ = httpx.Request("POST", "http://agency.invalid/")
_AIOHTTP_REQ = aiohttp.RequestInfo(
    URL("http://agency.invalid/"),
    "POST",
    CIMultiDictProxy(CIMultiDict()),
    URL("http://agency.invalid/"),
)


def malformed_xml_error() -> etree.XMLSyntaxError:
    try:
        etree.fromstring(b"<BirthRecordResponse><BirthRecord>")
    except etree.XMLSyntaxError as exc:
        return exc
    raise AssertionError("the document parsed")


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ConnectError("refused", request=_REQ), AgencyUnavailable),
        (httpx.ReadTimeout("slow", request=_REQ), AgencyUnavailable),
        (TimeoutError(), AgencyUnavailable),
        (aiohttp.ServerDisconnectedError(), AgencyUnavailable),
        (aiohttp.ClientPayloadError("cut off"), AgencyUnavailable),
        (aiohttp.ServerTimeoutError("slow"), AgencyUnavailable),
        (aiohttp.ClientResponseError(_AIOHTTP_REQ, (), status=502), AgencyUnavailable),
        (aiohttp.ClientResponseError(_AIOHTTP_REQ, (), status=400), AgencyError),
        (
            httpx.HTTPStatusError("x", request=_REQ, response=httpx.Response(503, request=_REQ)),
            AgencyUnavailable,
        ),
        (
            httpx.HTTPStatusError("x", request=_REQ, response=httpx.Response(404, request=_REQ)),
            AgencyError,
        ),
        (zeep.exceptions.TransportError("boom", status_code=500), AgencyUnavailable),  # type: ignore[no-untyped-call]
        (zeep.exceptions.Fault("registry locked", code="soap:Server"), AgencyError),  # type: ignore[no-untyped-call]
        (zeep.exceptions.XMLSyntaxError("bad"), AgencyError),  # type: ignore[no-untyped-call]
        (malformed_xml_error(), AgencyError),
    ],
)
def test_native_failures_are_classified(failure: Exception, kind: type[Exception]) -> None:
    with pytest.raises(kind) as raised, agency_call("FindBirthRecord"):
        raise failure
    assert raised.value.__cause__ is failure
    assert str(raised.value).find("FindBirthRecord") >= 0


def test_other_exceptions_pass_through_agency_call() -> None:
    assert translate(ValueError("bug"), "op") is None
    with pytest.raises(ValueError, match="bug"), agency_call("op"):
        raise ValueError("bug")
