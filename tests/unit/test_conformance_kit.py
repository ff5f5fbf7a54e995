"""The conformance kit, proven on a tiny birth-record adapter whose agency is a dict.

The fake agency has the kit's knobs (slow, HTTP 500, malformed XML, unreachable) and
fails the way a real httpx-based agency client would, so the adapter goes through the
same :func:`agency_call` translation as the real ones. Every check passes for the
well-behaved adapter; broken variants show that each kind of misbehaviour is caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest
from lxml import etree

from adapters.sdk import conformance as kit
from adapters.sdk.adapter import Adapter, Answer, Handler, Reject, RequestContext
from adapters.sdk.native_calls import agency_call
from adapters.sdk.policies import RetryPolicy
from adapters.sdk.runner import AdapterRunner
from gateway.core.envelope import RejectionCode
from gateway.testing.bus import BIRTH, birth_request, birth_response, open_bus
from gateway.xml.namespaces import qname

AGENCY_URL = "http://zags.invalid/find"
#: How long the slow agency takes: well inside the runner's call timeout.
SLOW_SECONDS = 0.02


class DictAgency:
    """An "agency" answering native XML bytes from a dict, with the kit's knobs."""

    def __init__(self) -> None:
        self.mode = kit.AgencyMode.NORMAL
        self.calls = 0
        self.records: dict[tuple[str, str, str], bytes] = {
            ("Смирнова", "Анна", "2019-03-14"): etree.tostring(birth_response()),
        }

    async def set_mode(self, mode: kit.AgencyMode) -> None:
        self.mode = mode

    async def find(self, last: str, first: str, born: str) -> bytes | None:
        self.calls += 1
        request = httpx.Request("POST", AGENCY_URL)
        match self.mode:
            case kit.AgencyMode.SLOW:
                await asyncio.sleep(SLOW_SECONDS)  # the agency's latency, not a wait in the test
            case kit.AgencyMode.HTTP500:
                response = httpx.Response(500, request=request)
                raise httpx.HTTPStatusError(
                    "500 Internal Server Error", request=request, response=response
                )
            case kit.AgencyMode.UNREACHABLE:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            case kit.AgencyMode.MALFORMED:
                return b"<BirthRecordResponse><BirthRecord>"
        return self.records.get((last, first, born))


class BirthAdapter:
    """What an adapter author writes: one handler, native call wrapped in agency_call."""

    name = "fake-zags"

    def __init__(self, agency: DictAgency) -> None:
        self.agency = agency

    def handlers(self) -> Mapping[str, Handler]:
        return {BIRTH: self.birth_record}

    async def birth_record(self, request: etree._Element, context: RequestContext) -> Answer:
        key = [request.findtext(f"{{{BIRTH}}}Child/{{{BIRTH}}}{f}") or "" for f in FIELDS]
        with agency_call("FindBirthRecord"):
            native = await self.agency.find(*key)
            if native is None:
                return Reject(RejectionCode.NO_DATA, "no birth act record matches the request")
            return etree.fromstring(native)


FIELDS = ("LastName", "FirstName", "BirthDate")


class RecordNotFoundAsContent(BirthAdapter):
    """Broken: answers an unknown record with content instead of a NO_DATA rejection."""

    async def birth_record(self, request: etree._Element, context: RequestContext) -> Answer:
        answer = await super().birth_record(request, context)
        if isinstance(answer, Reject):
            response = etree.Element(qname(BIRTH, "BirthRecordResponse"))
            etree.SubElement(response, qname(BIRTH, "RecordNotFound")).text = "none"
            return response
        return answer


class OutageAsNoData(BirthAdapter):
    """Broken: swallows agency failures and claims there is no record."""

    async def birth_record(self, request: etree._Element, context: RequestContext) -> Answer:
        try:
            return await super().birth_record(request, context)
        except Exception:
            return Reject(RejectionCode.NO_DATA, "nothing found")


class ForgetfulRunner(AdapterRunner):
    """Broken: keeps no answers, so a redelivery asks the agency again under a new id."""

    def _remember(self, request_id: str, prepared: object) -> None:
        pass


def not_found_request() -> etree._Element:
    request = birth_request()
    last = request.find(f"{{{BIRTH}}}Child/{{{BIRTH}}}LastName")
    assert last is not None
    last.text = "Неизвестная"
    return request


SAMPLES = {BIRTH: kit.TypeSamples(found=birth_request(), not_found=not_found_request())}


def harness_of(
    adapter: Callable[[DictAgency], Adapter] = BirthAdapter,
    *,
    attempts: int = 3,
    runner: type[AdapterRunner] = AdapterRunner,
) -> kit.HarnessFactory:
    @asynccontextmanager
    async def harness() -> AsyncIterator[kit.ConformanceHarness]:
        bus = await open_bus()
        agency = DictAgency()
        built = runner(
            adapter(agency),
            bus.zags,
            retry=RetryPolicy(attempts=attempts, delays=(0.5, 2.0), call_timeout=5.0),
            sleep=kit.RecordingSleep(),
        )
        try:
            yield kit.ConformanceHarness(bus.journal, bus.portal, built, agency)
        finally:
            await bus.close()

    return harness


@pytest.mark.parametrize("check", kit.CHECKS, ids=kit.check_name)
async def test_well_behaved_adapter_passes(check: kit.Check) -> None:
    await check(harness_of(), SAMPLES)


async def test_content_for_an_unknown_record_fails_the_no_data_check() -> None:
    with pytest.raises(kit.ConformanceFailure, match="unknown record was answered with content"):
        await kit.check_unknown_record_no_data(harness_of(RecordNotFoundAsContent), SAMPLES)


async def test_an_outage_reported_as_no_data_fails() -> None:
    with pytest.raises(
        kit.ConformanceFailure, match=r"unreachable was answered with \['NO_DATA'\]"
    ):
        await kit.check_agency_unreachable(harness_of(OutageAsNoData), SAMPLES)


async def test_a_runner_without_retries_fails_the_outage_checks() -> None:
    with pytest.raises(kit.ConformanceFailure, match="must be set to retry"):
        await kit.check_agency_http500(harness_of(attempts=1), SAMPLES)


async def test_a_runner_that_forgets_its_answers_is_not_idempotent() -> None:
    with pytest.raises(kit.ConformanceFailure, match="not with the same response"):
        await kit.check_redelivery_idempotent(harness_of(runner=ForgetfulRunner), SAMPLES)


async def test_samples_must_cover_exactly_the_declared_types() -> None:
    extra = {**SAMPLES, "urn://smevbus/types/fns/inn/1.0": SAMPLES[BIRTH]}
    with pytest.raises(kit.ConformanceFailure, match="samples for types not declared"):
        await kit.check_declared_types_answered(harness_of(), extra)


async def test_run_conformance_names_every_failing_check() -> None:
    with pytest.raises(kit.ConformanceFailure) as failure:
        await kit.run_conformance(harness_of(RecordNotFoundAsContent), SAMPLES)
    assert str(failure.value).startswith("unknown_record_no_data: ")
    assert "agency_unreachable" not in str(failure.value)
