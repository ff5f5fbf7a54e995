"""The MVD migration adapter against the mock MVD running as a real process.

A router on memory transport + SQLite (``open_bus``), the portal as consumer, the
adapter run by :class:`AdapterRunner` as ``MVD_MIGR``, and the mock MVD started with
``python -m adapters.mvd_migration.mock_service`` on a free port. The conformance
kit's knob is the mock's ``POST /_control``; "unreachable" is tried both as the mock's
outage switch (HTTP 503) and as a port nobody listens on. The runner's ``sleep`` does
not wait, so retries cost no time; nothing here measures time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.mvd_migration.adapter import MvdMigrationAdapter, build_mvd_adapter
from adapters.mvd_migration.dataset import Passport, build_dataset
from adapters.mvd_migration.mapping import PASSPORT, RESIDENCE
from adapters.mvd_migration.native import ReasonCode, StatusCode
from adapters.sdk import conformance as kit
from adapters.sdk.policies import RetryPolicy
from adapters.sdk.runner import AdapterRunner, OutcomeKind
from gateway.core.envelope import RejectionCode
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import verify_element
from gateway.testing.bus import content, open_bus
from gateway.testing.processes import MockAgencyProcess, free_port
from gateway.xml import messages as m
from gateway.xml.readers import read_response_data
from tests.integration.test_mock_mvd import MOCK_MVD

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
def mock_mvd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockAgencyProcess]:
    process = MockAgencyProcess(MOCK_MVD, tmp_path_factory.mktemp("mvd-adapter") / "mock.log")
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


class DeadPortKnob(ControlKnob):
    """UNREACHABLE points the adapter's one client at a port nobody listens on."""

    def __init__(self, base_url: str, adapter: MvdMigrationAdapter) -> None:
        super().__init__(base_url)
        self.adapter = adapter
        self.dead_url = f"http://127.0.0.1:{free_port()}"

    async def set_mode(self, mode: kit.AgencyMode) -> None:
        if mode is kit.AgencyMode.UNREACHABLE:
            self.adapter.http.base_url = self.dead_url
            return
        self.adapter.http.base_url = self.base_url
        await super().set_mode(mode)


def harness_of(base_url: str, *, dead_port: bool = False) -> kit.HarnessFactory:
    @asynccontextmanager
    async def harness() -> AsyncIterator[kit.ConformanceHarness]:
        bus = await open_bus()
        adapter = build_mvd_adapter(base_url)
        knob = DeadPortKnob(base_url, adapter) if dead_port else ControlKnob(base_url)
        await knob.set_mode(kit.AgencyMode.NORMAL)
        runner = AdapterRunner(
            adapter, bus.client("MVD_MIGR"), retry=RETRY, sleep=kit.RecordingSleep()
        )
        try:
            yield kit.ConformanceHarness(bus.journal, bus.portal, runner, knob)
        finally:
            await adapter.aclose()
            await bus.close()

    return harness


# --- samples -----------------------------------------------------------------------


def _set(element: etree._Element, ns: str, path: str, value: str | None) -> None:
    found = element.find("/".join(f"{{{ns}}}{part}" for part in path.split("/")))
    assert found is not None, path
    if value is None:
        parent = found.getparent()
        assert parent is not None
        parent.remove(found)
    else:
        found.text = value


def passport_request(series: str, number: str, issued: date | None = None) -> etree._Element:
    request = content("mvd-passport-validity.request")
    _set(request, PASSPORT, "Passport/Series", series)
    _set(request, PASSPORT, "Passport/Number", number)
    _set(request, PASSPORT, "Passport/IssueDate", issued.isoformat() if issued else None)
    _set(request, PASSPORT, "Holder", None)
    return request


def residence_request(
    last: str = "Смирнова",
    first: str = "Елена",
    middle: str = "Викторовна",
    born: str = "1991-07-02",
    passport: tuple[str, str] = ("7011", "123456"),
    kind: str | None = None,
) -> etree._Element:
    request = content("mvd-residence-registration.request")
    _set(request, RESIDENCE, "Person/LastName", last)
    _set(request, RESIDENCE, "Person/FirstName", first)
    _set(request, RESIDENCE, "Person/MiddleName", middle)
    _set(request, RESIDENCE, "Person/BirthDate", born)
    _set(request, RESIDENCE, "Passport/Series", passport[0])
    _set(request, RESIDENCE, "Passport/Number", passport[1])
    _set(request, RESIDENCE, "Kind", kind)
    return request


SAMPLES = {
    PASSPORT: kit.TypeSamples(
        found=passport_request("7011", "123456"), not_found=passport_request("0000", "000000")
    ),
    RESIDENCE: kit.TypeSamples(
        found=residence_request(), not_found=residence_request(last="Неизвестная")
    ),
}


# --- conformance -------------------------------------------------------------------


@pytest.mark.parametrize("check", kit.CHECKS, ids=kit.check_name)
async def test_conformance(check: kit.Check, mock_mvd: MockAgencyProcess) -> None:
    await check(harness_of(mock_mvd.base_url), SAMPLES)


async def test_conformance_unreachable_dead_port(mock_mvd: MockAgencyProcess) -> None:
    await kit.check_agency_unreachable(harness_of(mock_mvd.base_url, dead_port=True), SAMPLES)


# --- the answers ---------------------------------------------------------------------


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
    assert common_name(signer) == "MVD_MIGR"
    await h.portal.ack(delivery.metadata.message_id)
    return read_response_data(delivery.response_data)


def text(element: etree._Element | None, ns: str, path: str) -> str | None:
    assert element is not None
    return element.findtext("/".join(f"{{{ns}}}{part}" for part in path.split("/")))


async def test_passport_7011_123456_is_valid(mock_mvd: MockAgencyProcess) -> None:
    async with harness_of(mock_mvd.base_url)() as h:
        data = await ask(h, passport_request("7011", "123456"))
    assert not data.rejections
    assert text(data.content, PASSPORT, "Status") == "VALID"
    assert text(data.content, PASSPORT, "Passport/IssueDate") == "2011-07-19"
    assert text(data.content, PASSPORT, "Passport/IssuerCode") == "710-001"
    assert text(data.content, PASSPORT, "InvalidityReason") is None


async def test_smirnova_lives_in_tula_lenina(mock_mvd: MockAgencyProcess) -> None:
    async with harness_of(mock_mvd.base_url)() as h:
        data = await ask(h, residence_request(kind="RESIDENCE"))
    assert data.content is not None
    first = data.content.find(f"{{{RESIDENCE}}}Registration")
    assert text(first, RESIDENCE, "Kind") == "RESIDENCE"
    assert text(first, RESIDENCE, "Address/City") == "Тула"
    assert text(first, RESIDENCE, "Address/Street") == "ул. Ленина"
    assert text(first, RESIDENCE, "Address/RegionCode") == "71"
    assert text(first, RESIDENCE, "DeregisteredOn") is None  # current one first
    kinds = {text(r, RESIDENCE, "Kind") for r in data.content}
    assert kinds == {"RESIDENCE"}


def _passport_with(status: StatusCode, reason: ReasonCode | None) -> Passport:
    return next(p for p in build_dataset().passports if p.status is status and p.reason is reason)


EXPECTED_STATUS = [
    (StatusCode.VALID, None, "VALID"),
    (StatusCode.INVALID, ReasonCode.LOST, "LOST"),
    (StatusCode.INVALID, ReasonCode.STOLEN, "LOST"),
    (StatusCode.INVALID, ReasonCode.EXPIRED, "EXPIRED"),
    (StatusCode.INVALID, ReasonCode.REPLACED, "INVALID"),
    (StatusCode.INVALID, ReasonCode.HOLDER_DECEASED, "INVALID"),
    (StatusCode.INVALID, ReasonCode.INVALID_BLANK, "INVALID"),
]


async def test_passport_statuses_map_to_the_bus(mock_mvd: MockAgencyProcess) -> None:
    async with harness_of(mock_mvd.base_url)() as h:
        for status, reason, expected in EXPECTED_STATUS:
            passport = _passport_with(status, reason)
            data = await ask(h, passport_request(passport.series, passport.number))
            assert text(data.content, PASSPORT, "Status") == expected, (status, reason)
            if status is StatusCode.INVALID:
                assert text(data.content, PASSPORT, "InvalidityReason")
                assert text(data.content, PASSPORT, "StatusDate") == str(passport.invalid_since)


async def test_other_issue_date_is_no_data(mock_mvd: MockAgencyProcess) -> None:
    async with harness_of(mock_mvd.base_url)() as h:
        data = await ask(h, passport_request("7011", "123456", date(2000, 1, 1)))
    assert [r.code for r in data.rejections] == [RejectionCode.NO_DATA]


async def test_residence_without_passport_is_invalid_request(mock_mvd: MockAgencyProcess) -> None:
    request = residence_request()
    _set(request, RESIDENCE, "Passport", None)
    async with harness_of(mock_mvd.base_url)() as h:
        data = await ask(h, request)
    assert [r.code for r in data.rejections] == [RejectionCode.INVALID_REQUEST]


async def test_known_person_without_registrations_of_a_kind(mock_mvd: MockAgencyProcess) -> None:
    """Смирнова has no registration at a place of stay: RecordNotFound, not NO_DATA."""
    async with harness_of(mock_mvd.base_url)() as h:
        data = await ask(h, residence_request(kind="STAY"))
    assert not data.rejections
    assert text(data.content, RESIDENCE, "RecordNotFound")


async def test_all_registrations_without_a_kind(mock_mvd: MockAgencyProcess) -> None:
    async with harness_of(mock_mvd.base_url)() as h:
        data = await ask(h, residence_request())
    assert data.content is not None
    past = [r for r in data.content if text(r, RESIDENCE, "DeregisteredOn")]
    assert [text(r, RESIDENCE, "Address/Street") for r in past] == ["ул. Металлистов"]
    assert len(data.content) == 2


async def test_outage_retries_then_agency_unavailable(mock_mvd: MockAgencyProcess) -> None:
    async with harness_of(mock_mvd.base_url)() as h:
        await h.agency.set_mode(kit.AgencyMode.UNREACHABLE)
        await h.portal.send_request(passport_request("7011", "123456"))
        outcome = await h.runner.run_once()
        assert outcome is not None
        assert outcome.kind is OutcomeKind.REJECTED
        assert outcome.attempts == RETRY.attempts
