"""Conformance kit: the checks every adapter's tests run against that adapter.

An adapter passes when, through a real bus (router, journal, signatures), it

* answers each declared message type with schema-valid content, signed with its
  participant's key, that the portal reads back with ``GetResponse``;
* is idempotent on redelivery: the same request delivered twice (the first ack lost)
  leaves one response in the journal and one at the portal, and asks the agency once;
* rejects a request for a record the agency does not have with ``NO_DATA``;
* still answers when the agency is slow;
* when the agency answers HTTP 500, answers malformed XML, or cannot be reached,
  retries where it makes sense and then sends a ``AGENCY_UNAVAILABLE`` (after all
  retries) or ``FAILURE`` rejection that reaches the portal: nothing is dropped.

Usage, in the adapter's tests (pytest with ``asyncio_mode = "auto"``)::

    from adapters.sdk import conformance as kit

    @asynccontextmanager
    async def harness() -> AsyncIterator[kit.ConformanceHarness]:
        bus = await open_bus()                  # a bus on memory transport + SQLite
        agency = MockZags()                     # its knob: await agency.set_mode(...)
        runner = AdapterRunner(ZagsAdapter(agency.url), bus.zags,
                               retry=RetryPolicy(attempts=3), sleep=kit.RecordingSleep())
        try:
            yield kit.ConformanceHarness(bus.journal, bus.portal, runner, agency)
        finally:
            await bus.close()

    SAMPLES = {BIRTH: kit.TypeSamples(found=birth_request(), not_found=unknown_child())}

    @pytest.mark.parametrize("check", kit.CHECKS, ids=kit.check_name)
    async def test_conformance(check: kit.Check) -> None:
        await check(harness, SAMPLES)

Each check opens a fresh harness from the factory. The runner must use a retry policy
with more than one attempt, and a ``sleep`` that does not really wait
(:class:`RecordingSleep`), so the retries cost no time. The knob puts the agency in
one :class:`AgencyMode`; ``SLOW`` must stay within the runner's ``call_timeout``.
A failed check raises :class:`ConformanceFailure` saying what the adapter did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from lxml import etree

from adapters.sdk.runner import AdapterRunner, Outcome, OutcomeKind
from adapters.sdk.sources import InboundRequest
from gateway.client.participant import ParticipantClient
from gateway.core.envelope import RejectionCode
from gateway.core.errors import SchemaViolation
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import verify_element
from gateway.store.base import Store
from gateway.xml import messages as m
from gateway.xml.readers import read_response_data


class AgencyMode(StrEnum):
    NORMAL = "normal"
    SLOW = "slow"
    HTTP500 = "http500"
    MALFORMED = "malformed"
    UNREACHABLE = "unreachable"


class AgencyKnob(Protocol):
    async def set_mode(self, mode: AgencyMode) -> None:
        """Make the agency behave so from the next call on."""
        ...


@dataclass(frozen=True)
class ConformanceHarness:
    journal: Store
    """The bus's journal, where the kit checks what the bus recorded."""
    portal: ParticipantClient
    """A consumer allowed to request every declared type."""
    runner: AdapterRunner
    agency: AgencyKnob


@dataclass(frozen=True, eq=False)
class TypeSamples:
    """Request contents of one message type: one the agency has, one it does not."""

    found: etree._Element
    not_found: etree._Element


HarnessFactory = Callable[[], AbstractAsyncContextManager[ConformanceHarness]]
Samples = Mapping[str, TypeSamples]
Check = Callable[[HarnessFactory, Samples], Awaitable[None]]

#: Rejection codes allowed when the agency fails in each way.
FAILURE_CODES: Mapping[AgencyMode, frozenset[RejectionCode]] = {
    AgencyMode.HTTP500: frozenset({RejectionCode.AGENCY_UNAVAILABLE, RejectionCode.FAILURE}),
    AgencyMode.MALFORMED: frozenset({RejectionCode.FAILURE, RejectionCode.AGENCY_UNAVAILABLE}),
    AgencyMode.UNREACHABLE: frozenset({RejectionCode.AGENCY_UNAVAILABLE}),
}


class ConformanceFailure(AssertionError):
    """The adapter does not behave as the kit requires."""


class RecordingSleep:
    """A ``sleep`` for the runner that records the delays and does not wait.

    ``on_sleep`` (if set) is called with each delay after it is recorded, e.g. to call
    ``runner.stop()`` once the loop has backed off enough.
    """

    def __init__(self, on_sleep: Callable[[float], None] | None = None) -> None:
        self.delays: list[float] = []
        self.on_sleep = on_sleep

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        await asyncio.sleep(0)


def check_name(check: Check) -> str:
    return getattr(check, "__name__", repr(check)).removeprefix("check_")


# --- the checks -------------------------------------------------------------------------


async def check_declared_types_answered(factory: HarnessFactory, samples: Samples) -> None:
    async with factory() as h:
        _require_samples(h.runner, samples)
        for message_type, sample in samples.items():
            response = await _exchange(h, sample.found)
            _require_content(h, message_type, response.data, "a request for a record it has")


async def check_redelivery_idempotent(factory: HarnessFactory, samples: Samples) -> None:
    async with factory() as h:
        for message_type, sample in samples.items():
            sent = await h.portal.send_request(sample.found)
            request_id = str(sent.message_id)
            inbound = await h.runner.source.next()
            _require(inbound is not None, "the adapter's source found no request after SendRequest")
            assert inbound is not None
            first = await h.runner.process(_AckLost(inbound))
            _require(
                first.kind is OutcomeKind.ANSWERED and not first.acked,
                f"{message_type}: first delivery gave {first}",
            )
            second = await h.runner.process(inbound)  # what the bus hands out again
            _require(
                second.acked and second.response_id == first.response_id,
                f"{message_type}: a redelivery was answered as {second}, not with the same "
                f"response {first.response_id} and acked",
            )
            _require(second.attempts == 0, f"{message_type}: a redelivery asked the agency again")
            journaled = await h.journal.responses_to(request_id)
            _require(
                len(journaled) == 1,
                f"{message_type}: {len(journaled)} responses journaled for one request",
            )
            _require_content(h, message_type, await _read_answer(h, request_id), "a redelivery")
            _require(
                await h.portal.get_response() is None,
                f"{message_type}: the portal got a second response",
            )


async def check_unknown_record_no_data(factory: HarnessFactory, samples: Samples) -> None:
    async with factory() as h:
        for message_type, sample in samples.items():
            response = await _exchange(h, sample.not_found)
            _require_rejection(
                message_type, response, frozenset({RejectionCode.NO_DATA}), "unknown record"
            )


async def check_slow_agency_answered(factory: HarnessFactory, samples: Samples) -> None:
    async with factory() as h:
        await h.agency.set_mode(AgencyMode.SLOW)
        for message_type, sample in samples.items():
            response = await _exchange(h, sample.found)
            _require_content(h, message_type, response.data, "a slow agency")


async def check_agency_http500(factory: HarnessFactory, samples: Samples) -> None:
    await _check_failing_agency(factory, samples, AgencyMode.HTTP500)


async def check_agency_malformed(factory: HarnessFactory, samples: Samples) -> None:
    await _check_failing_agency(factory, samples, AgencyMode.MALFORMED)


async def check_agency_unreachable(factory: HarnessFactory, samples: Samples) -> None:
    await _check_failing_agency(factory, samples, AgencyMode.UNREACHABLE)


CHECKS: tuple[Check, ...] = (
    check_declared_types_answered,
    check_redelivery_idempotent,
    check_unknown_record_no_data,
    check_slow_agency_answered,
    check_agency_http500,
    check_agency_malformed,
    check_agency_unreachable,
)


async def run_conformance(factory: HarnessFactory, samples: Samples) -> None:
    """Run every check; raise one ConformanceFailure listing all that failed."""
    failures = []
    for check in CHECKS:
        try:
            await check(factory, samples)
        except ConformanceFailure as exc:
            failures.append(f"{check_name(check)}: {exc}")
    if failures:
        raise ConformanceFailure("; ".join(failures))


# --- plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    outcome: Outcome
    data: m.ResponseData


@dataclass(frozen=True, eq=False)
class _AckLost:
    """A delivery whose ack never reaches the bus, as when the adapter dies after answering."""

    inner: InboundRequest

    @property
    def delivery(self) -> m.RequestDelivery:
        return self.inner.delivery

    @property
    def request_id(self) -> str | None:
        return self.inner.request_id

    async def ack(self) -> None:
        raise ConnectionError("the ack was lost (simulated by the conformance kit)")


async def _check_failing_agency(
    factory: HarnessFactory, samples: Samples, mode: AgencyMode
) -> None:
    async with factory() as h:
        _require(h.runner.retry.attempts > 1, "the runner must be set to retry (attempts > 1)")
        await h.agency.set_mode(mode)
        for message_type, sample in samples.items():
            response = await _exchange(h, sample.found)
            code = _require_rejection(message_type, response, FAILURE_CODES[mode], str(mode))
            if code is RejectionCode.AGENCY_UNAVAILABLE:
                _require(
                    response.outcome.attempts == h.runner.retry.attempts,
                    f"{message_type}: {mode}: AGENCY_UNAVAILABLE after "
                    f"{response.outcome.attempts} call(s), not {h.runner.retry.attempts}",
                )
        await h.agency.set_mode(AgencyMode.NORMAL)
        for message_type, sample in samples.items():
            response = await _exchange(h, sample.found)
            _require_content(h, message_type, response.data, f"the agency back after {mode}")


async def _exchange(h: ConformanceHarness, content: etree._Element) -> _Answer:
    """Portal sends ``content``; the adapter handles one request; the portal reads back."""
    sent = await h.portal.send_request(content)
    request_id = str(sent.message_id)
    outcome = await h.runner.run_once()
    _require(outcome is not None, "the adapter found no request to handle after SendRequest")
    assert outcome is not None
    _require(outcome.request_id == request_id, f"the adapter handled {outcome.request_id}")
    _require(outcome.acked, f"the adapter did not settle the request: {outcome}")
    return _Answer(outcome, await _read_answer(h, request_id))


async def _read_answer(h: ConformanceHarness, request_id: str) -> m.ResponseData:
    delivery = await h.portal.get_response()
    _require(delivery is not None, f"no response to {request_id} reached the portal")
    assert delivery is not None
    _require(
        str(delivery.original_message_id) == request_id,
        f"the portal got a response to {delivery.original_message_id}, not to {request_id}",
    )
    holder = delivery.response_data.getparent()
    assert holder is not None
    # The client checked the signature is valid and trusted; here: whose it is.
    author = common_name(
        verify_element(holder, h.portal.verifier, "SenderInformationSystemSignature")
    )
    _require(
        author == h.runner.participant,
        f"the response is signed by {author}, not by {h.runner.participant}",
    )
    await h.portal.ack(delivery.metadata.message_id)
    return read_response_data(delivery.response_data)


def _require_samples(runner: AdapterRunner, samples: Samples) -> None:
    declared, given = set(runner.message_types), set(samples)
    _require(bool(declared), f"{runner.adapter.name} declares no message types")
    _require(declared <= given, f"no samples for declared types {sorted(declared - given)}")
    _require(given <= declared, f"samples for types not declared: {sorted(given - declared)}")


def _require_content(
    h: ConformanceHarness, message_type: str, data: m.ResponseData, case: str
) -> None:
    _require(
        data.content is not None,
        f"{message_type}: {case} was answered with {data.rejections or data.status}, "
        "not with content",
    )
    assert data.content is not None
    try:
        answered = h.runner.catalog.validate(data.content, expect="response").namespace
    except SchemaViolation as exc:
        raise ConformanceFailure(f"{message_type}: {case}: {exc.message}") from exc
    _require(answered == message_type, f"{message_type}: answered with type {answered}")


def _require_rejection(
    message_type: str, answer: _Answer, codes: frozenset[RejectionCode], case: str
) -> RejectionCode:
    data = answer.data
    got = [r.code for r in data.rejections]
    _require(
        len(got) == 1 and got[0] in codes,
        f"{message_type}: {case} was answered with "
        f"{got or ('content' if data.content is not None else data.status)}, "
        f"not with one of {sorted(codes)}",
    )
    return RejectionCode(got[0])


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceFailure(message)
