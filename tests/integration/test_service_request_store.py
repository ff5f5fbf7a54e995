"""Service request state in the store: one suite, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from gateway.core.aggregation import (
    ServiceRequestState,
    new_service_request,
    on_answer,
    on_cancel,
    on_sent,
)
from gateway.core.catalogue import Catalogue, parse_catalogue
from gateway.core.errors import NotFound
from gateway.core.service_lifecycle import CompletedBy, ServiceState
from gateway.store import (
    ServiceRequests,
    current_revision,
    head_revision,
    open_stores,
    upgrade,
)
from gateway.store.schema import metadata, service_requests
from gateway.store.service_requests import (
    MessageLink,
    MessageLinkConflict,
    ServiceRequestConflict,
    ServiceRequestRecord,
)
from tests.integration import store_fixtures
from tests.integration.store_fixtures import Backend

# The fixtures, bound here so that they stay local to this module.
postgres_url = store_fixtures.postgres_url
backend = store_fixtures.backend

CATALOGUE: Catalogue = parse_catalogue(
    (Path(__file__).resolve().parents[2] / "config" / "services.toml").read_text("utf-8")
)
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
PORTAL = "mfc-tula"


def rid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def mid(n: int) -> uuid.UUID:
    return uuid.UUID(int=(1 << 64) + n)


def new_request(
    n: int, service: str = "child-birth-benefit", at: datetime = T0
) -> ServiceRequestState:
    return new_service_request(rid(n), CATALOGUE.get(service), at)


def open_store(backend: Backend) -> ServiceRequests:
    return open_stores(backend.url, schema=backend.schema).service_requests


@pytest.fixture
async def requests(backend: Backend) -> AsyncIterator[ServiceRequests]:
    """A migrated service request store on ``backend``."""
    store = open_store(backend)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


# --- create, get ----------------------------------------------------------------------


async def test_create_and_get_round_trip_the_state(requests: ServiceRequests) -> None:
    state = new_request(1)
    state = on_sent(state, "birth-record", mid(1), T0 + timedelta(seconds=1))

    record, created = await requests.create(state, PORTAL)

    assert created
    assert record.version == 1
    assert record.status is ServiceState.PENDING
    assert record.completed_by is None
    assert record.next_deadline == min(p.deadline_at for p in state.parts)
    fetched = await requests.get(state.id)
    assert fetched == record
    assert fetched.state == state
    assert fetched.participant == PORTAL
    assert fetched.created_at.tzinfo is UTC
    assert fetched.created_at == T0
    assert await requests.get(str(state.id)) == record


async def test_final_state_round_trips_with_its_result(requests: ServiceRequests) -> None:
    state = new_request(1, "passport-check")
    record, _ = await requests.create(state, PORTAL)
    (part,) = state.parts
    answered = on_answer(state, part.id, {"Valid": "true", "Note": ["a", "b"]}, T0).state

    saved = await requests.save(answered, record.version, at=T0 + timedelta(seconds=5))

    assert saved.status is ServiceState.COMPLETED
    assert saved.completed_by is CompletedBy.ALL_ANSWERED
    assert saved.next_deadline is None
    assert saved.updated_at == T0 + timedelta(seconds=5)
    assert saved.created_at == T0
    assert (await requests.get(state.id)) == saved
    assert saved.state.result == answered.result


async def test_unknown_requests_are_not_found(requests: ServiceRequests) -> None:
    for unknown in (rid(404), "not-a-uuid"):
        with pytest.raises(NotFound):
            await requests.get(unknown)
    with pytest.raises(NotFound):
        await requests.save(new_request(404), 1, at=T0)


async def test_idempotency_key_returns_the_existing_request(
    requests: ServiceRequests,
) -> None:
    first, created = await requests.create(new_request(1), PORTAL, "key-1")
    assert created

    again, created_again = await requests.create(new_request(2), PORTAL, "key-1")
    # The first request under a key wins, even if the retry names another service.
    other, created_other = await requests.create(new_request(3, "passport-check"), PORTAL, "key-1")
    elsewhere, created_elsewhere = await requests.create(new_request(4), "mfc-other", "key-1")

    assert (created_again, created_other) == (False, False)
    assert again == first
    assert other == first
    assert created_elsewhere
    assert elsewhere.id == rid(4)
    for n in (2, 3):
        with pytest.raises(NotFound):
            await requests.get(rid(n))
    page = await requests.find()
    assert [r.id for r in page.items] == [rid(1), rid(4)]


async def test_the_first_body_digest_under_a_key_is_kept(
    requests: ServiceRequests,
) -> None:
    first, _ = await requests.create(new_request(1), PORTAL, "key-1", request_digest="a" * 64)
    again, created = await requests.create(new_request(2), PORTAL, "key-1", request_digest="b" * 64)
    legacy, _ = await requests.create(new_request(3), PORTAL, "key-2")
    assert not created
    assert first.request_digest == again.request_digest == "a" * 64
    assert (await requests.get(rid(1))).request_digest == "a" * 64
    assert (await requests.get(rid(3))).request_digest is None is legacy.request_digest


async def test_concurrent_posts_with_one_key_create_once(
    backend: Backend, requests: ServiceRequests
) -> None:
    others = [open_store(backend) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(
                s.create(new_request(n), PORTAL, "same-key")
                for n, s in enumerate([requests, *others, requests, *others], start=1)
            )
        )
    finally:
        for other in others:
            await other.close()

    assert sum(created for _, created in results) == 1
    assert len({record.id for record, _ in results}) == 1
    assert len((await requests.find()).items) == 1


async def test_repeated_create_without_key_is_the_same_request(
    requests: ServiceRequests,
) -> None:
    first, _ = await requests.create(new_request(1), PORTAL)
    again, created = await requests.create(new_request(1), PORTAL)
    assert not created
    assert again == first
    with pytest.raises(ServiceRequestConflict):
        await requests.create(new_request(1), "mfc-other")


# --- save: compare-and-set ------------------------------------------------------------


async def test_save_bumps_the_version(requests: ServiceRequests) -> None:
    record, _ = await requests.create(new_request(1), PORTAL)
    sent = on_sent(record.state, "birth-record", mid(1), T0)

    saved = await requests.save(sent, record.version, at=T0 + timedelta(seconds=1))

    assert saved.version == 2
    assert saved.state == sent
    assert saved.updated_at == T0 + timedelta(seconds=1)
    assert await requests.get(rid(1)) == saved


async def test_concurrent_saves_from_one_version_exactly_one_wins(
    backend: Backend, requests: ServiceRequests
) -> None:
    record, _ = await requests.create(new_request(1), PORTAL)
    others = [open_store(backend) for _ in range(3)]  # independent engines, as processes
    stores = [requests, *others, requests, *others]
    try:
        results = await asyncio.gather(
            *(
                s.save(on_sent(record.state, "birth-record", mid(i), T0), record.version, at=T0)
                for i, s in enumerate(stores)
            ),
            return_exceptions=True,
        )
    finally:
        for other in others:
            await other.close()

    winners = [r for r in results if isinstance(r, ServiceRequestRecord)]
    losers = [r for r in results if isinstance(r, ServiceRequestConflict)]
    assert len(winners) == 1, results
    assert len(losers) == len(results) - 1, results
    assert losers[0].detail["version"] == 2
    stored = await requests.get(rid(1))
    assert stored == winners[0]
    assert stored.version == 2
    winner_mid = mid(results.index(winners[0]))
    assert stored.state.part("birth-record").message_id == winner_mid
    # Only the winner's MessageID was linked.
    for i in range(len(stores)):
        link = await requests.by_message(mid(i))
        assert (link is not None) == (mid(i) == winner_mid)


async def test_the_loser_rereads_and_reapplies(backend: Backend, requests: ServiceRequests) -> None:
    record, _ = await requests.create(new_request(1), PORTAL)
    async with open_store(backend) as other:
        await other.save(on_sent(record.state, "birth-record", mid(1), T0), 1, at=T0)
    with pytest.raises(ServiceRequestConflict, match="re-read"):
        await requests.save(on_sent(record.state, "parent-inn", mid(2), T0), 1, at=T0)

    fresh = await requests.get(rid(1))
    saved = await requests.save(
        on_sent(fresh.state, "parent-inn", mid(2), T0), fresh.version, at=T0
    )
    assert saved.version == 3
    assert saved.state.part("birth-record").message_id == mid(1)
    assert saved.state.part("parent-inn").message_id == mid(2)


# --- message correlation --------------------------------------------------------------


async def test_link_and_find_by_message(requests: ServiceRequests) -> None:
    await requests.create(new_request(1), PORTAL)
    await requests.create(new_request(2), PORTAL)

    await requests.link_message(mid(1), rid(1), "birth-record")
    await requests.link_message(str(mid(1)).upper(), rid(1), "birth-record")  # no-op
    await requests.link_message(mid(2), rid(2), "parent-inn")

    first = await requests.by_message(mid(1))
    assert first is not None
    assert first.link == MessageLink(rid(1), "birth-record")
    assert first.record == await requests.get(rid(1))  # read with the link
    second = await requests.by_message(str(mid(2)))
    assert second is not None
    assert second.link == MessageLink(rid(2), "parent-inn")
    assert second.record.id == rid(2)
    assert await requests.by_message(mid(3)) is None
    assert await requests.by_message("not-a-uuid") is None
    with pytest.raises(MessageLinkConflict):
        await requests.link_message(mid(1), rid(2), "birth-record")
    with pytest.raises(NotFound):
        await requests.link_message(mid(4), rid(404), "birth-record")


async def test_save_links_part_message_ids(requests: ServiceRequests) -> None:
    record, _ = await requests.create(new_request(1), PORTAL)
    state = on_sent(record.state, "birth-record", mid(1), T0)
    state = on_sent(state, "parent-registration", mid(2), T0)
    saved = await requests.save(state, record.version, at=T0)
    state = on_answer(saved.state, "birth-record", {"Number": "1"}, T0).state
    await requests.save(state, saved.version, at=T0)  # links again: no-op

    links = [await requests.by_message(mid(n)) for n in (1, 2)]
    assert [None if linked is None else linked.link for linked in links] == [
        MessageLink(rid(1), "birth-record"),
        MessageLink(rid(1), "parent-registration"),
    ]


# --- deadlines and resume -------------------------------------------------------------


async def test_pending_due_is_ordered_by_deadline(requests: ServiceRequests) -> None:
    # First deadlines (both services: 2 min after creation) are 150, 120, 125 and 130 s.
    created = [
        (await requests.create(new_request(n, service, T0 + timedelta(seconds=s)), PORTAL))[0]
        for n, service, s in [
            (1, "child-birth-benefit", 30),
            (2, "passport-check", 0),
            (3, "child-birth-benefit", 5),
            (4, "passport-check", 10),
        ]
    ]
    cancelled = on_cancel(new_request(5), T0).state
    await requests.create(cancelled, PORTAL)
    by_deadline = sorted(created, key=lambda r: (r.next_deadline, str(r.id)))
    deadlines = [r.next_deadline for r in by_deadline]
    assert all(d is not None for d in deadlines)

    assert await requests.pending_due(T0) == []
    latest = max(d for d in deadlines if d is not None)
    due = await requests.pending_due(latest)
    assert [r.id for r in due] == [r.id for r in by_deadline]
    assert [r.id for r in await requests.pending_due(latest, limit=2)] == [
        r.id for r in by_deadline[:2]
    ]
    first = by_deadline[0].next_deadline
    assert first is not None
    assert [r.id for r in await requests.pending_due(first)] == [by_deadline[0].id]
    assert await requests.next_due() == first
    with pytest.raises(ValueError, match="aware"):
        await requests.pending_due(datetime(2025, 1, 1))


async def test_pending_lists_every_pending_request_for_resume(
    backend: Backend, requests: ServiceRequests
) -> None:
    for n in range(1, 5):
        await requests.create(new_request(n, at=T0 + timedelta(seconds=n)), PORTAL)
    record = await requests.get(rid(2))
    await requests.save(on_cancel(record.state, T0).state, record.version, at=T0)

    async with open_store(backend) as restarted:
        pending = await restarted.pending()

    assert [r.id for r in pending] == [rid(1), rid(3), rid(4)]
    assert all(r.status is ServiceState.PENDING for r in pending)
    assert (await requests.get(rid(2))).next_deadline is None


# --- find -----------------------------------------------------------------------------


async def test_find_filters_by_status_service_participant_and_time(
    requests: ServiceRequests,
) -> None:
    specs = [
        (1, "child-birth-benefit", PORTAL, 0),
        (2, "passport-check", PORTAL, 60),
        (3, "passport-check", "mfc-other", 120),
        (4, "child-birth-benefit", "mfc-other", 180),
    ]
    for n, service, portal, s in specs:
        await requests.create(new_request(n, service, T0 + timedelta(seconds=s)), portal)
    record = await requests.get(rid(2))
    await requests.save(on_cancel(record.state, T0).state, record.version, at=T0)

    async def ids(**filters: object) -> list[int]:
        page = await requests.find(**filters)  # type: ignore[arg-type]
        return [r.id.int for r in page.items]

    assert await ids() == [1, 2, 3, 4]
    assert await ids(status=ServiceState.PENDING) == [1, 3, 4]
    assert await ids(status=ServiceState.CANCELLED) == [2]
    assert await ids(service="passport-check") == [2, 3]
    assert await ids(participant="mfc-other") == [3, 4]
    assert await ids(since=T0 + timedelta(seconds=60)) == [2, 3, 4]
    assert await ids(service="passport-check", status=ServiceState.PENDING) == [3]
    assert await ids(service="nothing") == []


async def test_find_pages_through_everything_once(requests: ServiceRequests) -> None:
    # Three requests share each creation time, so pages must break ties on id.
    expected = []
    at = T0
    for n in range(1, 11):
        await requests.create(new_request(n, at=at), PORTAL)
        expected.append(rid(n))
        if n % 3 == 0:
            at += timedelta(seconds=1)

    seen: list[uuid.UUID] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await requests.find(participant=PORTAL, limit=3, after=cursor)
        pages += 1
        assert len(page.items) <= 3
        seen.extend(r.id for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert seen == expected
    assert pages == 4


async def test_find_rejects_bad_limits_and_cursors(requests: ServiceRequests) -> None:
    for limit in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            await requests.find(limit=limit)
    with pytest.raises(ValueError, match="cursor"):
        await requests.find(after="garbage!")


# --- schema and migrations ------------------------------------------------------------


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_are_idempotent_and_match_the_tables(backend: Backend) -> None:
    assert head_revision() == "0007"
    await upgrade(backend.url, "0001", schema=backend.schema)
    async with open_store(backend) as store:
        assert await current_revision(backend.url, schema=backend.schema) == "0001"
        await store.migrate()
        await store.migrate()
        await store.create(new_request(1), PORTAL)
        await upgrade(backend.url, schema=backend.schema)
        await upgrade(backend.url, schema=backend.schema)

        assert await current_revision(backend.url, schema=backend.schema) == "0007"
        assert (await store.get(rid(1))).state == new_request(1)
        async with backend.sql() as connection:
            assert await connection.run_sync(_schema_differences) == []


async def test_requests_from_before_callbacks_have_none(backend: Backend) -> None:
    await upgrade(backend.url, "0002", schema=backend.schema)
    state = new_request(1)
    async with backend.sql() as connection:  # a row as the stores wrote it at 0002
        await connection.execute(
            service_requests.insert().values(
                id=str(state.id),
                service=state.service,
                participant=PORTAL,
                status=state.status.value,
                state=state.model_dump(mode="json"),
                next_deadline=None,
                created_at=T0,
                updated_at=T0,
                version=1,
            )
        )
    async with open_store(backend) as store:
        await store.migrate()

        assert await current_revision(backend.url, schema=backend.schema) == head_revision()
        assert (await store.get(rid(1))).callback is None
        done = on_cancel((await store.get(rid(1))).state, T0).state
        assert (await store.save(done, 1, at=T0)).callback is None


async def test_shares_the_journal_engine_in_memory() -> None:
    async with open_stores("sqlite://") as stores:
        journal, requests = stores.journal, stores.service_requests
        await journal.migrate()
        await requests.create(new_request(1), PORTAL)
        results = await asyncio.gather(
            requests.get(rid(1)), requests.pending(), journal.find(), requests.find()
        )
        assert results[0].id == rid(1)
