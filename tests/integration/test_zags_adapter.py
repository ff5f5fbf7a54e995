"""The ZAGS adapter against the mock ZAGS registry running as a real process.

The mock is started once per module (``python -m adapters.zags.mock_service`` on a free
127.0.0.1 port), the adapter is built for each test from its ``?wsdl`` URL with
:func:`build_zags_adapter` (one zeep client, as in the process), and each harness is a
fresh bus (router on memory transport + in-memory SQLite) with the ZAGS participant's
:class:`AdapterRunner`. The conformance kit's knob drives the mock through
``POST /_control``; "unreachable" points the adapter at a port nobody listens on.
Nothing here needs RabbitMQ or PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.sdk import conformance as kit
from adapters.sdk.adapter import AgencyError, AgencyUnavailable, Reject, RequestContext
from adapters.sdk.policies import RetryPolicy
from adapters.sdk.runner import AdapterRunner, OutcomeKind
from adapters.zags.adapter import ZagsAdapter, build_zags_adapter
from adapters.zags.mapping import BIRTH, DEATH, MAPPING_OF, MARRIAGE
from adapters.zags.mock.dataset import build_registry
from gateway.core.envelope import RejectionCode
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import verify_element
from gateway.testing.bus import content, open_bus
from gateway.testing.processes import MockAgencyProcess, free_port
from gateway.xml.readers import read_response_data
from gateway.xml.schema import type_catalog

REPO = Path(__file__).resolve().parents[2]
DEFAULT_KNOBS = {"latency_ms": 0, "error_rate": 0.0, "outage": False, "malformed": False}
#: The slow agency's latency: well inside the runner's call timeout.
SLOW_MS = 50
RETRY = RetryPolicy(attempts=3, delays=(0.5, 2.0), call_timeout=10.0)


@pytest.fixture(scope="module")
def mock_zags(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The mock registry as a separate process; yields its base URL."""
    log = tmp_path_factory.mktemp("zags_adapter") / "mock_zags.log"
    mock = MockAgencyProcess("adapters.zags.mock_service", log, health="/_health")
    try:
        yield mock.base_url
    finally:
        mock.stop()


@pytest.fixture
async def adapter(mock_zags: str) -> AsyncIterator[ZagsAdapter]:
    """A process's one adapter (one zeep client), built from the mock's WSDL URL; one per
    test, as its HTTP connections belong to the test's event loop."""
    built = build_zags_adapter(f"{mock_zags}/zags?wsdl")
    yield built
    await built.aclose()


class MockZagsKnob:
    """The kit's knob for the mock process (and for the adapter's endpoint)."""

    def __init__(self, base_url: str, adapter: ZagsAdapter) -> None:
        self.base_url = base_url
        self.adapter = adapter
        self.endpoint = f"{base_url}/zags"
        self.dead_endpoint = f"http://127.0.0.1:{free_port()}/zags"

    async def control(self, **knobs: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.post(f"{self.base_url}/_control", json=knobs)
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    async def set_mode(self, mode: kit.AgencyMode) -> None:
        self.adapter.use_endpoint(self.endpoint)
        match mode:
            case kit.AgencyMode.NORMAL:
                await self.control(**DEFAULT_KNOBS)
            case kit.AgencyMode.SLOW:
                await self.control(**{**DEFAULT_KNOBS, "latency_ms": SLOW_MS})
            case kit.AgencyMode.HTTP500:
                await self.control(**{**DEFAULT_KNOBS, "error_rate": 1.0})
            case kit.AgencyMode.MALFORMED:
                await self.control(**{**DEFAULT_KNOBS, "malformed": True})
            case kit.AgencyMode.UNREACHABLE:
                await self.control(**DEFAULT_KNOBS)
                self.adapter.use_endpoint(self.dead_endpoint)


@pytest.fixture
def knob(mock_zags: str, adapter: ZagsAdapter) -> MockZagsKnob:
    return MockZagsKnob(mock_zags, adapter)


def harness_of(knob: MockZagsKnob) -> kit.HarnessFactory:
    @asynccontextmanager
    async def harness() -> AsyncIterator[kit.ConformanceHarness]:
        bus = await open_bus()
        await knob.set_mode(kit.AgencyMode.NORMAL)
        runner = AdapterRunner(knob.adapter, bus.zags, retry=RETRY, sleep=kit.RecordingSleep())
        try:
            yield kit.ConformanceHarness(bus.journal, bus.portal, runner, knob)
        finally:
            await knob.set_mode(kit.AgencyMode.NORMAL)
            await bus.close()

    return harness


def _renamed(sample: str, path: str, ns: str, surname: str) -> etree._Element:
    request = content(sample)
    element = request.find("/".join(f"{{{ns}}}{step}" for step in path.split("/")))
    assert element is not None
    element.text = surname
    return request


SAMPLES = {
    BIRTH: kit.TypeSamples(
        found=content("zags-birth-record.request"),
        not_found=_renamed("zags-birth-record.request", "Child/LastName", BIRTH, "Неизвестная"),
    ),
    MARRIAGE: kit.TypeSamples(
        found=content("zags-marriage-record.request"),
        not_found=_renamed(
            "zags-marriage-record.request", "Husband/LastName", MARRIAGE, "Неизвестный"
        ),
    ),
    DEATH: kit.TypeSamples(
        found=content("zags-death-record.request"),
        not_found=_renamed("zags-death-record.request", "Person/LastName", DEATH, "Неизвестный"),
    ),
}


# --- the conformance suite ------------------------------------------------------------


@pytest.mark.parametrize("check", kit.CHECKS, ids=kit.check_name)
async def test_conformance(check: kit.Check, knob: MockZagsKnob) -> None:
    await check(harness_of(knob), SAMPLES)


# --- the demo child, end to end ---------------------------------------------------------


def _shape(element: etree._Element) -> tuple[Any, ...]:
    """Tag, text and children, ignoring prefixes and layout whitespace."""
    text = (element.text or "").strip()
    return (element.tag, text, tuple(_shape(child) for child in element))


async def test_demo_childs_birth_record_comes_from_the_registry_signed_by_zags(
    knob: MockZagsKnob,
) -> None:
    bus = await open_bus()
    try:
        runner = AdapterRunner(knob.adapter, bus.zags, retry=RETRY, sleep=kit.RecordingSleep())
        before = (await knob.control())["stats"]["answered"]
        request = etree.fromstring(
            f'<BirthRecordRequest xmlns="{BIRTH}"><Child><LastName>Смирнова</LastName>'
            "<FirstName>Анна</FirstName><BirthDate>2019-03-14</BirthDate></Child>"
            "</BirthRecordRequest>"
        )
        sent = await bus.portal.send_request(request)

        outcome = await runner.run_once()
        assert outcome is not None
        assert (outcome.kind, outcome.acked) == (OutcomeKind.ANSWERED, True)

        delivery = await bus.portal.get_response()  # verifies bus + ZAGS signatures
        assert delivery is not None
        assert delivery.original_message_id == sent.message_id
        holder = delivery.response_data.getparent()
        assert holder is not None
        signer = verify_element(holder, bus.portal.verifier, "SenderInformationSystemSignature")
        assert common_name(signer) == "ZAGS"
        answer = read_response_data(delivery.response_data)
        assert answer.content is not None
        type_catalog().validate(answer.content, expect="response")
        assert _shape(answer.content) == _shape(content("zags-birth-record.response"))
        assert (await knob.control())["stats"]["answered"] == before + 1
        await bus.portal.ack(delivery.metadata.message_id)
    finally:
        await bus.close()


# --- mapping details through the real registry -----------------------------------------


def _context(message_type: str) -> RequestContext:
    return RequestContext(
        message_id=uuid.uuid4(), reply_to="reply", sender="PORTAL", message_type=message_type
    )


async def _ask(adapter: ZagsAdapter, message_type: str, request: etree._Element) -> Any:
    return await adapter.find(MAPPING_OF[message_type], request, _context(message_type))


async def test_divorce_date_is_mapped_to_dissolution_date(
    knob: MockZagsKnob, adapter: ZagsAdapter
) -> None:
    await knob.set_mode(kit.AgencyMode.NORMAL)
    divorced = next(m for m in build_registry().marriages if m.divorce_date is not None)
    request = etree.fromstring(
        f'<MarriageRecordRequest xmlns="{MARRIAGE}">'
        f"<Husband><LastName>{divorced.husband.surname_after}</LastName>"
        f"<FirstName>{divorced.husband.given_name}</FirstName>"
        f"<BirthDate>{divorced.husband.date_of_birth.isoformat()}</BirthDate></Husband>"
        f"<Wife><LastName>{divorced.wife.surname_before}</LastName>"
        f"<FirstName>{divorced.wife.given_name}</FirstName>"
        f"<BirthDate>{divorced.wife.date_of_birth.isoformat()}</BirthDate></Wife>"
        f"<ActRecord><Number>{divorced.act_number}</Number>"
        f"<Date>{divorced.act_date.isoformat()}</Date></ActRecord>"
        "</MarriageRecordRequest>"
    )
    type_catalog().validate(request, expect="request")

    answer = await _ask(adapter, MARRIAGE, request)

    assert isinstance(answer, etree._Element), answer
    type_catalog().validate(answer, expect="response")
    ns = {"t": MARRIAGE}
    assert answer.xpath("string(t:MarriageRecord/t:DissolutionDate)", namespaces=ns) == (
        divorced.divorce_date.isoformat() if divorced.divorce_date else None
    )
    assert answer.xpath("string(t:MarriageRecord/t:Wife/t:LastNameAfter)", namespaces=ns) == (
        divorced.wife.surname_after
    )


async def test_death_record_maps_sex_to_gender(knob: MockZagsKnob, adapter: ZagsAdapter) -> None:
    await knob.set_mode(kit.AgencyMode.NORMAL)
    answer = await _ask(adapter, DEATH, content("zags-death-record.request"))
    assert isinstance(answer, etree._Element), answer
    assert _shape(answer) == _shape(content("zags-death-record.response"))


async def test_registry_invalid_request_fault_is_an_invalid_request_rejection(
    knob: MockZagsKnob, adapter: ZagsAdapter
) -> None:
    await knob.set_mode(kit.AgencyMode.NORMAL)
    # No person and no act number: the registry's search rules refuse it with a Fault.
    keyless = etree.fromstring(
        f'<DeathRecordRequest xmlns="{DEATH}"><DeathDate>2023-10-04</DeathDate>'
        "</DeathRecordRequest>"
    )
    answer = await _ask(adapter, DEATH, keyless)
    assert isinstance(answer, Reject)
    assert answer.code is RejectionCode.INVALID_REQUEST


async def test_registry_outage_503_is_agency_unavailable(
    knob: MockZagsKnob, adapter: ZagsAdapter
) -> None:
    await knob.control(**{**DEFAULT_KNOBS, "outage": True})
    try:
        with pytest.raises(AgencyUnavailable, match="503"):
            await _ask(adapter, BIRTH, content("zags-birth-record.request"))
    finally:
        await knob.set_mode(kit.AgencyMode.NORMAL)
    answer = await _ask(adapter, BIRTH, content("zags-birth-record.request"))
    assert isinstance(answer, etree._Element)


async def test_malformed_registry_answer_is_an_agency_error(
    knob: MockZagsKnob, adapter: ZagsAdapter
) -> None:
    await knob.set_mode(kit.AgencyMode.MALFORMED)
    try:
        with pytest.raises(AgencyError, match="malformed"):
            await _ask(adapter, DEATH, content("zags-death-record.request"))
    finally:
        await knob.set_mode(kit.AgencyMode.NORMAL)
