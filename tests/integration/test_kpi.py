"""KPIs from a seeded journal, on SQLite and PostgreSQL, against figures worked out by hand.

The journal is written row by row with SQLAlchemy Core (what the router and the
aggregator would have left behind), so the test pins the KPI definitions and not
any one writer.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.core.envelope import MessageKind
from gateway.core.errors import InvalidContent
from gateway.ops.kpi import AgencyKpi, Period, ServiceKpi, compute_kpis
from gateway.ops.kpi_queries import EngineKpiDatabase
from gateway.store.engine import create_engine
from gateway.store.migrate import upgrade
from gateway.store.records import NewMessage
from gateway.store.schema import messages, service_requests
from tests.integration.store_fixtures import Backend, backend, postgres_url

__all__ = ["backend", "postgres_url"]  # fixtures

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PERIOD = Period(T0, T0 + timedelta(hours=1))
#: Judged 2 minutes after the period: with a 5-minute answer timeout, a request
#: created before T0+57m and still unanswered has timed out.
NOW = T0 + timedelta(hours=1, minutes=2)
BIRTH = "urn://smevbus/types/zags/birth-record/1.0"
MARRIAGE = "urn://smevbus/types/zags/marriage-record/1.0"
PASSPORT = "urn://smevbus/types/mvd/passport-validity/1.0"

_ids = itertools.count(1)


def _id() -> str:
    return str(uuid.UUID(int=next(_ids)))


class Journal:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.messages: list[dict[str, Any]] = []
        self.service_requests: list[dict[str, Any]] = []

    def request(
        self,
        agency: str,
        message_type: str,
        at: timedelta,
        state: str = "RESPONDED",
        *,
        answer_after: float | None = None,
        rejection: str | None = None,
        test: bool = False,
    ) -> None:
        """A request created at ``T0 + at``; ``answer_after`` seconds later its final
        answer (a refusal with code ``rejection``), if any."""
        created = T0 + at
        request_id = _id()
        answer_id = None if answer_after is None else _id()
        self.messages.append(
            _row(request_id, "request", "PORTAL71", agency, message_type, state, created, test)
            | {"answered_by": answer_id}
        )
        if answer_id is not None:
            assert answer_after is not None
            answered = created + timedelta(seconds=answer_after)
            self.messages.append(
                _row(
                    answer_id, "response", agency, "PORTAL71", message_type, "ACKED", answered, test
                )
                | {"in_reply_to": request_id, "rejection_code": rejection}
            )

    def service_request(
        self, service: str, status: str, at: timedelta, took: float | None = None
    ) -> None:
        created = T0 + at
        self.service_requests.append(
            {
                "id": _id(),
                "service": service,
                "participant": "PORTAL71",
                "status": status,
                "completed_by": None,
                "state": {},
                "created_at": created,
                "updated_at": created + timedelta(seconds=took or 0),
                "version": 1,
            }
        )

    async def write(self) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(insert(messages), self.messages)
            await connection.execute(insert(service_requests), self.service_requests)


def _row(
    message_id: str,
    kind: str,
    sender: str,
    recipient: str,
    message_type: str,
    state: str,
    at: datetime,
    test: bool,
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "kind": kind,
        "sender": sender,
        "recipient": recipient,
        "message_type": message_type,
        "in_reply_to": None,
        "content_sha256": "0" * 64,
        "xml": b"<x/>",
        "state": state,
        "created_at": at,
        "updated_at": at,
        "expires_at": None,
        "test_message": test,
        "version": 1,
        "answered_by": None,
        "rejection_code": None,
    }


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(backend.url, schema=backend.schema)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def seeded(engine: AsyncEngine) -> EngineKpiDatabase:
    j = Journal(engine)
    minute = timedelta(minutes=1)
    # ZAGS, birth records: 8 that count.
    j.request("ZAGS", BIRTH, 1 * minute, answer_after=1.25)
    j.request("ZAGS", BIRTH, 2 * minute, "RESPONSE_DELIVERED", answer_after=2.0)
    j.request("ZAGS", BIRTH, 3 * minute, answer_after=4.0)
    j.request("ZAGS", BIRTH, 4 * minute, answer_after=3.0, rejection="NO_DATA")
    j.request("ZAGS", BIRTH, 5 * minute, answer_after=30.0, rejection="AGENCY_UNAVAILABLE")
    j.request("ZAGS", BIRTH, 6 * minute, "EXPIRED")
    j.request("ZAGS", BIRTH, 7 * minute, "DEAD_LETTERED")
    j.request("ZAGS", BIRTH, 10 * minute, "QUEUED")  # 52 minutes unanswered: timed out
    # ... and those that do not: a test message, one the bus refused, one the broker
    # refused, one just before the period, one at its (exclusive) end.
    j.request("ZAGS", BIRTH, 11 * minute, answer_after=0.1, test=True)
    j.request("ZAGS", BIRTH, 12 * minute, "REJECTED")
    j.request("ZAGS", BIRTH, 13 * minute, "FAILED")
    j.request("ZAGS", BIRTH, timedelta(seconds=-1), answer_after=9.0)
    j.request("ZAGS", BIRTH, 60 * minute, answer_after=9.0)
    # ZAGS, marriage records: one answered, one sent 3 minutes ago (pending).
    j.request("ZAGS", MARRIAGE, 20 * minute, answer_after=0.5)
    j.request("ZAGS", MARRIAGE, 59 * minute, "ACKED")
    # MVD: two answers.
    j.request("MVD_MIGR", PASSPORT, 30 * minute, answer_after=10.0)
    j.request("MVD_MIGR", PASSPORT, 31 * minute, "RESPONSE_DELIVERED", answer_after=20.0)

    j.service_request("child-birth-benefit", "COMPLETED", 1 * minute, 60)
    j.service_request("child-birth-benefit", "COMPLETED", 2 * minute, 120)
    j.service_request("child-birth-benefit", "PARTIAL", 3 * minute, 300)
    j.service_request("child-birth-benefit", "FAILED", 4 * minute, 30)
    j.service_request("child-birth-benefit", "PENDING", 5 * minute)
    j.service_request("child-birth-benefit", "CANCELLED", 6 * minute, 10)
    j.service_request("child-birth-benefit", "COMPLETED", -1 * minute, 1)  # before
    j.service_request("passport-check", "TIMED_OUT", 7 * minute, 600)
    await j.write()
    return EngineKpiDatabase(engine)


async def test_agency_kpis_per_type_and_per_agency(seeded: EngineKpiDatabase) -> None:
    report = await compute_kpis(seeded, PERIOD, now=NOW)

    assert report.agencies == (
        AgencyKpi("MVD_MIGR", None, 2, 2, 0, 0, 0, 0, 0, 15.0, 19.5),
        AgencyKpi("MVD_MIGR", PASSPORT, 2, 2, 0, 0, 0, 0, 0, 15.0, 19.5),
        # answer times 0.5, 1.25, 2, 3 (refusal), 4: p50 = 2; p95 at 3.8 -> 3 + 0.8 * 1
        AgencyKpi("ZAGS", None, 10, 4, 1, 1, 2, 1, 1, 2.0, 3.8),
        # answer times 1.25, 2, 3, 4: p50 at 1.5 -> 2.5; p95 at 2.85 -> 3 + 0.85 * 1
        AgencyKpi("ZAGS", BIRTH, 8, 3, 1, 1, 2, 1, 0, 2.5, 3.85),
        AgencyKpi("ZAGS", MARRIAGE, 2, 1, 0, 0, 0, 0, 1, 0.5, 0.5),
    )
    zags = report.agency_totals()["ZAGS"]
    assert zags.settled == 9
    assert zags.availability == pytest.approx(5 / 9)
    assert zags.rejection_rate == pytest.approx(1 / 5)
    assert zags.meets_target is False
    birth = report.agencies[3]
    assert (birth.availability, birth.rejection_rate) == (0.5, 0.25)
    assert report.availability() == {"MVD_MIGR": 1.0, "ZAGS": pytest.approx(5 / 9)}


async def test_service_kpis(seeded: EngineKpiDatabase) -> None:
    report = await compute_kpis(seeded, PERIOD, now=NOW)

    assert report.services == (
        # times to result 30, 60, 120, 300 (cancelled and pending left out):
        # p50 at 1.5 -> 90; p95 at 2.85 -> 120 + 0.85 * 180
        ServiceKpi("child-birth-benefit", 6, 2, 1, 1, 0, 1, 1, 90.0, 273.0),
        ServiceKpi("passport-check", 1, 0, 0, 0, 1, 0, 0, 600.0, 600.0),
    )


async def test_one_agency_and_the_answer_timeout(seeded: EngineKpiDatabase) -> None:
    mvd = await compute_kpis(seeded, PERIOD, now=NOW, agency="MVD_MIGR")
    assert [(a.agency, a.message_type) for a in mvd.agencies] == [
        ("MVD_MIGR", None),
        ("MVD_MIGR", PASSPORT),
    ]

    # With an hour's patience the QUEUED birth request (sent 52 minutes before NOW)
    # is still pending, and no longer counts against availability.
    patient = await compute_kpis(seeded, PERIOD, now=NOW, answer_timeout=timedelta(hours=1))
    birth = next(a for a in patient.agencies if a.message_type == BIRTH)
    assert (birth.timed_out, birth.pending) == (1, 1)
    assert birth.availability == pytest.approx(4 / 7)


async def test_an_empty_period(engine: AsyncEngine) -> None:
    report = await compute_kpis(EngineKpiDatabase(engine), PERIOD, now=NOW)
    assert (report.agencies, report.services) == ((), ())


_REJECTED_XML = (
    b'<ns1:SendResponseRequest xmlns:ns1="urn://x-artefacts-smev-gov-ru/services/'
    b'message-exchange/types/1.1"><ns1:SenderProvidedResponseData Id="SIGNED">'
    b"<ns1:MessageID>m</ns1:MessageID><ns1:To>t</ns1:To><ns1:RequestRejected>"
    b"<ns1:RejectionReasonCode>AGENCY_UNAVAILABLE</ns1:RejectionReasonCode>"
    b"<ns1:RejectionReasonDescription>down</ns1:RejectionReasonDescription>"
    b"</ns1:RequestRejected></ns1:SenderProvidedResponseData></ns1:SendResponseRequest>"
)


async def test_migration_fills_in_the_rejection_codes_of_journaled_responses(
    backend: Backend,
) -> None:
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        await upgrade(engine, "0005")
        request, refused, answered = _id(), _id(), _id()
        rows = [
            _row(request, "request", "PORTAL71", "ZAGS", BIRTH, "RESPONDED", T0, False),
            _row(refused, "response", "ZAGS", "PORTAL71", BIRTH, "ACKED", T0, False)
            | {"xml": _REJECTED_XML, "in_reply_to": request},
            _row(answered, "response", "ZAGS", "PORTAL71", BIRTH, "ACKED", T0, False)
            | {"xml": b"<a>RequestRejected is only text here</a>", "in_reply_to": request},
        ]
        for row in rows:
            del row["rejection_code"]
        async with engine.begin() as connection:
            await connection.execute(insert(messages), rows)

        await upgrade(engine)

        async with engine.connect() as connection:
            result = await connection.execute(
                select(messages.c.message_id, messages.c.rejection_code)
            )
            codes = {row.message_id: row.rejection_code for row in result}
        assert codes == {request: None, refused: "AGENCY_UNAVAILABLE", answered: None}
    finally:
        await engine.dispose()


def _new(kind: MessageKind, **extra: Any) -> NewMessage:
    return NewMessage(
        message_id=_id(),
        kind=kind,
        sender="PORTAL71" if kind is MessageKind.REQUEST else "ZAGS",
        recipient="ZAGS" if kind is MessageKind.REQUEST else "PORTAL71",
        message_type=BIRTH,
        content_sha256="0" * 64,
        xml=b"<x/>",
        **extra,
    )


async def test_the_journal_keeps_a_refusals_code_and_the_kpis_count_it(backend: Backend) -> None:
    async with backend.open() as journal:
        await journal.migrate()
        request = _new(MessageKind.REQUEST)
        refusal = _new(
            MessageKind.RESPONSE,
            in_reply_to=request.message_id,
            rejection_code="AGENCY_UNAVAILABLE",
        )
        await journal.accept(request, at=T0)
        await journal.accept(refusal, at=T0 + timedelta(seconds=3))
        async with journal.engine.connect() as connection:
            result = await connection.execute(
                select(messages.c.message_id, messages.c.rejection_code)
            )
            codes = {row.message_id: row.rejection_code for row in result}
        assert codes == {request.message_id: None, refusal.message_id: "AGENCY_UNAVAILABLE"}

        assert await journal.claim_answer(request.message_id, refusal.message_id)
        async with journal.engine.begin() as connection:
            await connection.execute(
                messages.update()
                .where(messages.c.message_id == request.message_id)
                .values(state="RESPONDED")
            )
        report = await compute_kpis(EngineKpiDatabase(journal.engine), PERIOD, now=NOW)
    zags = report.agency_totals()["ZAGS"]
    assert (zags.volume, zags.unavailable, zags.availability) == (1, 1, 0.0)


def test_only_a_response_carries_a_rejection_code() -> None:
    with pytest.raises(InvalidContent):
        _new(MessageKind.REQUEST, rejection_code="NO_DATA")
    with pytest.raises(ValueError, match="rejection_code"):
        _new(MessageKind.RESPONSE, in_reply_to=_id(), rejection_code="X" * 65)
