"""The FNS adapter against the mock FNS running as a real process: the kit's conformance
suite, Смирнова's INN, an unknown taxpayer, and the mock's native interface.

A router on memory transport + SQLite (``open_bus``), the portal as consumer, the
adapter run by :class:`AdapterRunner` as ``FNS``, and the mock started with
``python -m adapters.fns.mock_service`` on a free port. The kit's knob is the mock's
``POST /_control``. The runner's ``sleep`` does not wait, so retries cost no time;
nothing here measures time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.fns import mapping
from adapters.fns.adapter import build_fns_adapter
from adapters.fns.dataset import FIXED_PEOPLE, build_dataset, personal_inn
from adapters.fns.mapping import INN
from adapters.fns.native import FaultCode, inn_query, native_schema, q, to_bytes
from adapters.sdk import conformance as kit
from adapters.sdk.policies import RetryPolicy
from adapters.sdk.runner import AdapterRunner, OutcomeKind
from gateway.core.envelope import RejectionCode
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import verify_element
from gateway.testing.bus import content, open_bus
from gateway.testing.processes import MockAgencyProcess, free_port
from gateway.xml import messages as m
from gateway.xml.parse import parse_secure
from gateway.xml.readers import read_response_data
from gateway.xml.schema import type_catalog

REPO = Path(__file__).resolve().parents[2]
#: Mock latency in SLOW mode: far inside the runner's call timeout and httpx's.
SLOW_MS = 50
RETRY = RetryPolicy(attempts=3, delays=(0.5, 2.0), call_timeout=8.0)

#: Mode -> the mock's /_control body (after a reset).
KNOBS: dict[kit.AgencyMode, dict[str, Any]] = {
    kit.AgencyMode.NORMAL: {},
    kit.AgencyMode.SLOW: {"latency_ms": SLOW_MS},
    kit.AgencyMode.HTTP500: {"error_rate": 1.0},
    kit.AgencyMode.MALFORMED: {"malformed": True},
    kit.AgencyMode.UNREACHABLE: {"outage": True},
}


@pytest.fixture(scope="module")
def mock_fns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockAgencyProcess]:
    process = MockAgencyProcess(
        "adapters.fns.mock_service", tmp_path_factory.mktemp("fns-adapter") / "mock.log"
    )
    yield process
    process.stop()


class ControlKnob:
    """The kit's knob as the mock's ``POST /_control``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def set_mode(self, mode: kit.AgencyMode) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as control:
            body = {"reset": True, **KNOBS[mode]}
            (await control.post("/_control", json=body)).raise_for_status()


def harness_of(base_url: str) -> kit.HarnessFactory:
    @asynccontextmanager
    async def harness() -> AsyncIterator[kit.ConformanceHarness]:
        bus = await open_bus()
        adapter = build_fns_adapter(base_url)
        knob = ControlKnob(base_url)
        await knob.set_mode(kit.AgencyMode.NORMAL)
        runner = AdapterRunner(adapter, bus.client("FNS"), retry=RETRY, sleep=kit.RecordingSleep())
        try:
            yield kit.ConformanceHarness(bus.journal, bus.portal, runner, knob)
        finally:
            await adapter.aclose()
            await bus.close()

    return harness


# --- samples -----------------------------------------------------------------------


def inn_request(
    last: str = "Смирнова",
    first: str = "Елена",
    middle: str | None = "Викторовна",
    born: str = "1991-07-02",
    passport: tuple[str, str] = ("7011", "123456"),
) -> etree._Element:
    """The bus sample ``fns-inn.request`` with these names, birth date and passport."""
    request = content("fns-inn.request")
    values = {
        "LastName": last,
        "FirstName": first,
        "MiddleName": middle,
        "BirthDate": born,
        "Passport/Series": passport[0],
        "Passport/Number": passport[1],
    }
    for path, value in values.items():
        found = request.find("/".join(f"{{{INN}}}{part}" for part in path.split("/")))
        assert found is not None, path
        if value is None:
            parent = found.getparent()
            assert parent is not None
            parent.remove(found)
        else:
            found.text = value
    return request


SAMPLES = {INN: kit.TypeSamples(found=inn_request(), not_found=inn_request(last="Неизвестная"))}


# --- conformance -------------------------------------------------------------------


@pytest.mark.parametrize("check", kit.CHECKS, ids=kit.check_name)
async def test_conformance(check: kit.Check, mock_fns: MockAgencyProcess) -> None:
    await check(harness_of(mock_fns.base_url), SAMPLES)


async def test_unreachable_port_is_agency_unavailable() -> None:
    """Nobody listening at all (not the mock's outage switch): retried, then rejected."""
    async with harness_of_dead_port() as h:
        await h.portal.send_request(inn_request())
        outcome = await h.runner.run_once()
    assert outcome is not None
    assert outcome.kind is OutcomeKind.REJECTED
    assert outcome.code is RejectionCode.AGENCY_UNAVAILABLE
    assert outcome.attempts == RETRY.attempts


@asynccontextmanager
async def harness_of_dead_port() -> AsyncIterator[kit.ConformanceHarness]:
    bus = await open_bus()
    adapter = build_fns_adapter(f"http://127.0.0.1:{free_port()}")
    runner = AdapterRunner(adapter, bus.client("FNS"), retry=RETRY, sleep=kit.RecordingSleep())
    try:
        yield kit.ConformanceHarness(bus.journal, bus.portal, runner, ControlKnob(""))
    finally:
        await adapter.aclose()
        await bus.close()


# --- the answers through the bus ----------------------------------------------------


async def ask(h: kit.ConformanceHarness, request: etree._Element) -> m.ResponseData:
    """Portal sends; the adapter answers once; the portal reads, checks signer, acks."""
    sent = await h.portal.send_request(request)
    outcome = await h.runner.run_once()
    assert outcome is not None
    assert outcome.acked
    assert outcome.request_id == str(sent.message_id)
    delivery = await h.portal.get_response()
    assert delivery is not None
    assert delivery.original_message_id == sent.message_id
    holder = delivery.response_data.getparent()
    assert holder is not None
    signer = verify_element(holder, h.portal.verifier, "SenderInformationSystemSignature")
    assert common_name(signer) == "FNS"
    await h.portal.ack(delivery.metadata.message_id)
    return read_response_data(delivery.response_data)


def text(element: etree._Element | None, local: str) -> str | None:
    assert element is not None
    return element.findtext(f"{{{INN}}}{local}")


async def test_smirnova_inn(mock_fns: MockAgencyProcess) -> None:
    async with harness_of(mock_fns.base_url)() as h:
        data = await ask(h, inn_request())
    assert not data.rejections
    assert text(data.content, "Inn") == "710512345645"
    assert text(data.content, "TaxAuthorityCode") == "7105"
    assert text(data.content, "AssignmentDate") == "2005-09-14"


async def test_smirnov_inn_names_compared_as_fns_does(mock_fns: MockAgencyProcess) -> None:
    """Case and ё/е do not matter to the tax service."""
    request = inn_request("СМИРНОВ", "Сергей", "Александрович", "1989-11-23", ("7009", "654321"))
    async with harness_of(mock_fns.base_url)() as h:
        data = await ask(h, request)
    assert text(data.content, "Inn") == FIXED_PEOPLE[1].inn


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(inn_request(last="Неизвестная"), id="unknown-name"),
        pytest.param(inn_request(born="1991-07-03"), id="other-birth-date"),
        pytest.param(inn_request(passport=("7011", "123457")), id="other-passport"),
        pytest.param(inn_request(middle=None), id="no-patronymic"),
    ],
)
async def test_unknown_taxpayer_is_no_data(
    request_: etree._Element, mock_fns: MockAgencyProcess
) -> None:
    async with harness_of(mock_fns.base_url)() as h:
        data = await ask(h, request_)
    assert data.content is None
    assert [r.code for r in data.rejections] == [RejectionCode.NO_DATA]


# --- the pure mapping ---------------------------------------------------------------


def test_mapping_puts_the_passport_as_fns_writes_it() -> None:
    query = mapping.query(inn_request(), query_id="q-1")
    native_schema().validate(query, "query")
    doc = query.find(q("Doc"))
    assert doc is not None
    assert (doc.text, doc.get("kod")) == ("70 11 123456", "21")
    assert query.findtext(f"{q('FIO')}/{q('Otchestvo')}") == "Викторовна"
    assert query.get("queryId") == "q-1"


def test_mapping_of_not_found_and_of_an_inn() -> None:
    reply = parse_secure(
        b'<InnReply xmlns="urn://fns.example/inn/1.0"><Inn taxOffice="7107">710712345628</Inn>'
        b"</InnReply>"
    )
    answer = mapping.response(reply)
    assert isinstance(answer, etree._Element)
    type_catalog().validate(answer, expect="response")
    assert text(answer, "AssignmentDate") is None
    none = parse_secure(b'<InnReply xmlns="urn://fns.example/inn/1.0"><NotFound/></InnReply>')
    assert isinstance(mapping.response(none), mapping.NoRecord)


# --- the mock's native interface ----------------------------------------------------


@pytest.fixture
def fns(mock_fns: MockAgencyProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_fns.base_url, timeout=10) as client:
        client.post("/_control", json={"reset": True}).raise_for_status()
        yield client


def reply_of(response: httpx.Response) -> etree._Element:
    assert response.headers["content-type"].startswith("application/xml")
    root = parse_secure(response.content)
    native_schema().validate(root, "reply")
    assert root.tag == q("InnReply")
    return root


def test_every_seeded_inn_has_valid_control_digits() -> None:
    assert personal_inn("5001007322") == "500100732259"  # a published example
    for person in build_dataset().people:
        assert person.inn == personal_inn(person.inn[:10]), person
    with pytest.raises(ValueError, match="ten digits"):
        personal_inn("71051234")


def test_mock_answers_every_seeded_taxpayer(fns: httpx.Client) -> None:
    for person in build_dataset().people:
        query = inn_query(
            person.surname,
            person.given_name,
            person.patronymic,
            person.born,
            person.series,
            person.number,
            query_id="x",
        )
        reply = reply_of(fns.post("/inn", content=to_bytes(query)))
        assert reply.findtext(q("Inn")) == person.inn
        assert reply.get("queryId") == "x"


def test_mock_refuses_a_bad_query(fns: httpx.Client) -> None:
    response = fns.post("/inn", content=b"<InnQuery xmlns='urn://fns.example/inn/1.0'/>")
    assert response.status_code == 400
    fault = reply_of(response).find(q("Fault"))
    assert fault is not None
    assert fault.get("code") == FaultCode.BAD_QUERY


def test_mock_outage_is_503_with_retry_after(fns: httpx.Client) -> None:
    fns.post("/_control", json={"outage": True}).raise_for_status()
    query = inn_query("Смирнова", "Елена", None, date(1991, 7, 2), "7011", "123456")
    response = fns.post("/inn", content=to_bytes(query))
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert reply_of(response).find(q("Fault")) is not None
    assert fns.get("/_control").json()["outage"] is True
