"""The message journal: one behaviour suite, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import uuid
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, make_url, select

from gateway.core.clock import FakeClock
from gateway.core.errors import InvalidContent, MessageAlreadySent, NotFound
from gateway.core.lifecycle import TRANSITIONS, IllegalTransition, MessageState
from gateway.store import (
    AcceptOutcome,
    AcceptResult,
    Journal,
    MessageKind,
    MessageRecord,
    NewMessage,
    TransitionConflict,
    current_revision,
    head_revision,
    journal_pg,
    open_stores,
    replies_pg,
    requests_pg,
    upgrade,
)
from gateway.store.base import PullWindow
from gateway.store.engine import async_url
from gateway.store.journal import REPLAY_PURGE_INTERVAL
from gateway.store.pg import libpq_url
from gateway.store.schema import messages, metadata, replay_guard
from tests.integration import store_fixtures
from tests.integration.store_fixtures import Backend

# The fixtures, bound here so that they stay local to this module.
postgres_url = store_fixtures.postgres_url
backend = store_fixtures.backend
store = store_fixtures.store
clock = store_fixtures.clock


S = MessageState
HAPPY_REQUEST_PATH = [S.QUEUED, S.DELIVERED, S.ACKED, S.RESPONDED, S.RESPONSE_DELIVERED]


def message_id(n: int) -> str:
    return str(uuid.UUID(int=n))


def new_message(
    n: int,
    *,
    content: bytes = b"<Request/>",
    sender: str = "mfc",
    recipient: str = "zags",
    kind: MessageKind = MessageKind.REQUEST,
    in_reply_to: str | None = None,
    expires_at: datetime | None = None,
    test_message: bool = False,
) -> NewMessage:
    xml = content + f"<!-- {n} -->".encode()
    return NewMessage(
        message_id=message_id(n),
        kind=kind,
        sender=sender,
        recipient=recipient,
        message_type="urn://x-artefacts-zags-rogzags/root/112-51/4.0.1",
        content_sha256=hashlib.sha256(xml).hexdigest(),
        xml=xml,
        in_reply_to=in_reply_to,
        expires_at=expires_at,
        test_message=test_message,
    )


def paths_from_accepted() -> dict[MessageState, list[MessageState]]:
    """The shortest sequence of moves from ACCEPTED to every reachable state."""
    paths: dict[MessageState, list[MessageState]] = {S.ACCEPTED: []}
    queue = deque([S.ACCEPTED])
    while queue:
        state = queue.popleft()
        for target in sorted(TRANSITIONS[state]):
            if target not in paths:
                paths[target] = [*paths[state], target]
                queue.append(target)
    return paths


async def drive(
    store: Journal, clock: FakeClock, mid: str, path: list[MessageState]
) -> MessageRecord:
    record = dataclasses.replace(await store.get(mid), xml=None)  # as a move returns it
    for target in path:
        clock.advance(timedelta(seconds=1))
        record = await store.transition(
            mid, target, at=clock.now(), reason=f"to {target}", actor="router"
        )
    return record


# --- accept, get, history -------------------------------------------------------------


async def test_accept_journals_the_message_and_its_first_transition(
    store: Journal, clock: FakeClock
) -> None:
    expires = clock.now() + timedelta(hours=1)
    message = new_message(1, expires_at=expires, test_message=True)

    result = await store.accept(message, at=clock.now(), reason="submitted", actor="api")

    assert result.outcome is AcceptOutcome.ACCEPTED
    assert not result.duplicate
    record = await store.get(message.message_id)
    assert result.record.xml is None  # the body goes in, it does not come back
    assert record == dataclasses.replace(result.record, xml=message.xml)
    assert record.state is S.ACCEPTED
    assert record.version == 1
    assert record.xml == message.xml
    assert record.content_sha256 == message.content_sha256
    assert (record.kind, record.sender, record.recipient) == (MessageKind.REQUEST, "mfc", "zags")
    assert record.message_type == message.message_type
    assert record.in_reply_to is None
    assert record.test_message is True
    assert record.created_at == record.updated_at == clock.now()
    assert record.expires_at == expires
    [first] = await store.history(message.message_id)
    assert (first.from_state, first.to_state) == (None, S.ACCEPTED)
    assert (first.at, first.reason, first.actor) == (clock.now(), "submitted", "api")


async def test_times_come_back_as_the_same_instant_in_utc(store: Journal) -> None:
    moscow = timezone(timedelta(hours=3))
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=moscow)

    await store.accept(new_message(1), at=at)
    record = await store.get(message_id(1))

    assert record.created_at == at
    assert record.created_at.tzinfo is UTC
    assert record.created_at.hour == 9


async def test_naive_times_are_refused(store: Journal) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.accept(new_message(1), at=datetime(2026, 1, 1))


async def test_message_ids_are_canonical_uuids(store: Journal, clock: FakeClock) -> None:
    upper = message_id(0xABCDEF).upper()
    await store.accept(new_message(0xABCDEF), at=clock.now())

    assert (await store.get(upper)).message_id == message_id(0xABCDEF)
    with pytest.raises(InvalidContent):
        dataclasses.replace(new_message(1), message_id="not-a-uuid")


async def test_unknown_messages_are_not_found(store: Journal, clock: FakeClock) -> None:
    for unknown in (message_id(404), "not-a-uuid"):
        with pytest.raises(NotFound):
            await store.get(unknown)
        with pytest.raises(NotFound):
            await store.history(unknown)
        with pytest.raises(NotFound):
            await store.transition(unknown, S.QUEUED, at=clock.now())


# --- idempotent acceptance ------------------------------------------------------------


async def test_identical_resubmission_is_a_no_op(store: Journal, clock: FakeClock) -> None:
    first = await store.accept(new_message(1), at=clock.now())
    await store.transition(message_id(1), S.QUEUED, at=clock.now())
    clock.advance(timedelta(minutes=5))

    again = await store.accept(new_message(1), at=clock.now(), reason="redelivered")

    assert again.outcome is AcceptOutcome.DUPLICATE
    assert again.duplicate
    assert again.record.state is S.QUEUED
    assert again.record.created_at == first.record.created_at
    assert again.record.version == 2
    assert [t.to_state for t in await store.history(message_id(1))] == [S.ACCEPTED, S.QUEUED]


async def test_conflicting_resubmission_raises_message_already_sent(
    store: Journal, clock: FakeClock
) -> None:
    original = await store.accept(new_message(1), at=clock.now())

    with pytest.raises(MessageAlreadySent) as caught:
        await store.accept(new_message(1, content=b"<Other/>"), at=clock.now())

    assert caught.value.code == "message_already_sent"
    assert caught.value.detail["message_id"] == message_id(1)
    assert message_id(1) in str(caught.value)
    assert dataclasses.replace(await store.get(message_id(1)), xml=None) == original.record
    assert len(await store.history(message_id(1))) == 1


async def test_concurrent_identical_submissions_accept_once(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    others = [backend.open() for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(s.accept(new_message(1), at=clock.now()) for s in [store, *others, store, *others])
        )
    finally:
        for other in others:
            await other.close()

    outcomes = sorted(r.outcome for r in results)
    assert outcomes.count(AcceptOutcome.ACCEPTED) == 1
    assert outcomes.count(AcceptOutcome.DUPLICATE) == len(results) - 1
    assert len(await store.history(message_id(1))) == 1


async def test_accepts_made_together_each_have_their_own_outcome(
    backend: Backend, clock: FakeClock
) -> None:
    """A fan-out's parts are accepted together: on PostgreSQL in one statement. Each
    message still gets what it would alone: new ones are journaled with their own time,
    reason and actor, a resubmission is a duplicate, a conflicting one is refused."""
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        await journal.migrate()
        await journal.accept(new_message(3), at=clock.now())
        await journal.accept(new_message(4), at=clock.now())
        await journal.get(message_id(4))  # lets the trace of the accepts through
        statements.clear()
        later = clock.now() + timedelta(seconds=5)

        results = await asyncio.gather(
            journal.accept(new_message(1), at=clock.now(), reason="one", actor="mfc"),
            journal.accept(new_message(2, test_message=True), at=later, actor="portal"),
            journal.accept(new_message(3), at=later),
            journal.accept(new_message(4, content=b"<Other/>"), at=later),
            return_exceptions=True,
        )
        await journal.get(message_id(1))

        first, second, again, conflicting = results
        assert isinstance(first, AcceptResult)
        assert isinstance(second, AcceptResult)
        assert (first.outcome, second.outcome) == (AcceptOutcome.ACCEPTED,) * 2
        assert isinstance(again, AcceptResult)
        assert again.outcome is AcceptOutcome.DUPLICATE
        assert again.record.created_at == clock.now()
        assert isinstance(conflicting, MessageAlreadySent)
        for result, message in ((first, new_message(1)), (second, new_message(2))):
            record = await journal.get(message.message_id)
            assert record == dataclasses.replace(result.record, xml=message.xml)
        assert (await journal.get(message_id(2))).test_message
        assert (await journal.get(message_id(2))).created_at == later
        histories = [await journal.history(message_id(n)) for n in (1, 2, 3, 4)]
        assert [[(t.to_state, t.at, t.reason, t.actor) for t in h] for h in histories] == [
            [(S.ACCEPTED, clock.now(), "one", "mfc")],
            [(S.ACCEPTED, later, None, "portal")],
            [(S.ACCEPTED, clock.now(), None, None)],
            [(S.ACCEPTED, clock.now(), None, None)],
        ]
    if backend.name == "postgresql":
        assert writes(statements) == ["WITH"]


async def test_accepts_made_together_still_succeed_when_one_of_them_fails_the_batch(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    """A message PostgreSQL refuses (a NUL byte in a name) fails only its own accept."""
    if backend.name != "postgresql":
        pytest.skip("SQLite stores a NUL byte, and accepts one message at a time")
    bad = dataclasses.replace(new_message(2), sender="mf\x00c")
    results = await asyncio.gather(
        store.accept(new_message(1), at=clock.now()),
        store.accept(bad, at=clock.now()),
        store.accept(new_message(3), at=clock.now()),
        return_exceptions=True,
    )
    assert [getattr(r, "outcome", None) for r in results] == [
        AcceptOutcome.ACCEPTED, None, AcceptOutcome.ACCEPTED
    ]  # fmt: skip
    assert isinstance(results[1], Exception)
    assert [(await store.get(message_id(n))).state for n in (1, 3)] == [S.ACCEPTED] * 2
    with pytest.raises(NotFound):
        await store.get(message_id(2))


# --- lifecycle ------------------------------------------------------------------------


async def test_request_happy_path_is_recorded_in_order(store: Journal, clock: FakeClock) -> None:
    start = clock.now()
    await store.accept(new_message(1), at=start, reason="submitted", actor="api")

    record = await drive(store, clock, message_id(1), HAPPY_REQUEST_PATH)

    assert record.state is S.RESPONSE_DELIVERED
    assert record.version == 1 + len(HAPPY_REQUEST_PATH)
    assert record.updated_at == clock.now()
    assert record.created_at == start
    history = await store.history(message_id(1))
    assert [(t.from_state, t.to_state) for t in history] == [
        (None, S.ACCEPTED),
        (S.ACCEPTED, S.QUEUED),
        (S.QUEUED, S.DELIVERED),
        (S.DELIVERED, S.ACKED),
        (S.ACKED, S.RESPONDED),
        (S.RESPONDED, S.RESPONSE_DELIVERED),
    ]
    assert [t.at for t in history] == [start + timedelta(seconds=i) for i in range(6)]
    assert [t.reason for t in history] == ["submitted"] + [f"to {s}" for s in HAPPY_REQUEST_PATH]
    assert [t.actor for t in history] == ["api"] + ["router"] * 5
    assert [t.id for t in history] == sorted(t.id for t in history)


async def test_every_legal_transition_is_journaled(store: Journal, clock: FakeClock) -> None:
    paths = paths_from_accepted()
    assert set(paths) == set(MessageState), "every state must be reachable from ACCEPTED"
    edges = [(src, dst) for src, targets in TRANSITIONS.items() for dst in sorted(targets)]
    for n, (src, dst) in enumerate(edges, start=1):
        await store.accept(new_message(n), at=clock.now())
        before = await drive(store, clock, message_id(n), paths[src])
        clock.advance(timedelta(seconds=1))

        after = await store.transition(
            message_id(n), dst, at=clock.now(), reason=f"{src}->{dst}", actor="test"
        )

        assert (after.state, after.version) == (dst, before.version + 1)
        last = (await store.history(message_id(n)))[-1]
        assert (last.from_state, last.to_state, last.at) == (src, dst, clock.now())
        assert (last.reason, last.actor) == (f"{src}->{dst}", "test")


async def test_illegal_transitions_raise_and_change_nothing(
    store: Journal, clock: FakeClock
) -> None:
    for n, (state, path) in enumerate(sorted(paths_from_accepted().items()), start=1):
        await store.accept(new_message(n), at=clock.now())
        record = await drive(store, clock, message_id(n), path)
        history = await store.history(message_id(n))
        for target in sorted(set(MessageState) - TRANSITIONS[state]):
            with pytest.raises(IllegalTransition) as caught:
                await store.transition(message_id(n), target, at=clock.now())
            assert not isinstance(caught.value, TransitionConflict)
            assert caught.value.detail == {"current": str(state), "target": str(target)}
        assert dataclasses.replace(await store.get(message_id(n)), xml=None) == record
        assert await store.history(message_id(n)) == history


async def test_concurrent_identical_moves_exactly_one_wins(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    await store.transition(message_id(1), S.QUEUED, at=clock.now())
    others = [backend.open() for _ in range(3)]  # independent engines, as separate processes
    try:
        results = await asyncio.gather(
            *(
                s.transition(message_id(1), S.DELIVERED, at=clock.now(), actor=f"consumer-{i}")
                for i, s in enumerate([store, *others, store, *others])
            ),
            return_exceptions=True,
        )
    finally:
        for other in others:
            await other.close()

    winners = [r for r in results if isinstance(r, MessageRecord)]
    losers = [r for r in results if isinstance(r, IllegalTransition)]
    assert len(winners) == 1, results
    assert len(losers) == len(results) - 1, results
    assert winners[0].version == 3
    history = await store.history(message_id(1))
    assert [t.to_state for t in history] == [S.ACCEPTED, S.QUEUED, S.DELIVERED]
    assert history[-1].actor == f"consumer-{results.index(winners[0])}"


async def test_move_from_a_stale_version_is_a_conflict(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    seen = (await store.accept(new_message(1), at=clock.now())).record
    other = backend.open()
    try:
        await other.transition(message_id(1), S.QUEUED, at=clock.now(), expected_version=1)
        with pytest.raises(TransitionConflict) as caught:
            await store.transition(
                message_id(1), S.REJECTED, at=clock.now(), expected_version=seen.version
            )
    finally:
        await other.close()

    assert isinstance(caught.value, IllegalTransition)
    assert caught.value.detail["message_id"] == message_id(1)
    assert (await store.get(message_id(1))).state is S.QUEUED


async def test_move_conditional_on_the_state_alone(store: Journal, clock: FakeClock) -> None:
    await store.accept(new_message(1), at=clock.now())
    moved = await store.transition(
        message_id(1), S.QUEUED, at=clock.now(), reason="r", expected_state=S.ACCEPTED
    )
    assert (moved.state, moved.version) == (S.QUEUED, 2)
    # The message is QUEUED now: a move that expects it ACCEPTED is a conflict.
    with pytest.raises(TransitionConflict):
        await store.transition(message_id(1), S.REJECTED, at=clock.now(), expected_state=S.ACCEPTED)
    with pytest.raises(TransitionConflict):
        await store.transition(
            message_id(1), S.DELIVERED, at=clock.now(), expected_state=S.QUEUED, expected_version=1
        )
    with pytest.raises(NotFound):
        await store.transition(message_id(2), S.QUEUED, at=clock.now(), expected_state=S.ACCEPTED)
    history = await store.history(message_id(1))
    assert [(t.from_state, t.to_state, t.reason) for t in history] == [
        (None, S.ACCEPTED, None),
        (S.ACCEPTED, S.QUEUED, "r"),
    ]
    assert (await store.get(message_id(1))).version == 2


async def test_repeated_transition_is_refused_not_repeated(
    store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    await store.transition(message_id(1), S.QUEUED, at=clock.now())

    with pytest.raises(IllegalTransition):
        await store.transition(message_id(1), S.QUEUED, at=clock.now())

    assert len(await store.history(message_id(1))) == 2


# --- queries --------------------------------------------------------------------------


async def test_responses_are_found_by_the_request_they_answer(
    store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    for n in (3, 2):
        clock.advance(timedelta(seconds=1))
        response = new_message(
            n,
            kind=MessageKind.RESPONSE,
            sender="zags",
            recipient="mfc",
            in_reply_to=message_id(1),
        )
        await store.accept(response, at=clock.now())

    responses = await store.responses_to(message_id(1))

    assert [r.message_id for r in responses] == [message_id(3), message_id(2)]
    assert all(r.in_reply_to == message_id(1) for r in responses)
    assert all(r.kind is MessageKind.RESPONSE for r in responses)
    assert await store.responses_to(message_id(3)) == []
    assert await store.responses_to("not-a-uuid") == []


async def test_find_filters_by_sender_recipient_state_and_time(
    store: Journal, clock: FakeClock
) -> None:
    start = clock.now()
    senders = ["mfc", "mfc", "portal", "mfc", "portal"]
    recipients = ["zags", "mvd", "zags", "zags", "mvd"]
    for n, (sender, recipient) in enumerate(zip(senders, recipients, strict=True), start=1):
        await store.accept(new_message(n, sender=sender, recipient=recipient), at=clock.now())
        clock.advance(timedelta(minutes=1))
    await store.transition(message_id(4), S.QUEUED, at=clock.now())

    async def ids(**filters: object) -> list[int]:
        page = await store.find(**filters)  # type: ignore[arg-type]
        assert page.next_cursor is None
        return [uuid.UUID(r.message_id).int for r in page.items]

    assert await ids() == [1, 2, 3, 4, 5]
    assert await ids(sender="mfc") == [1, 2, 4]
    assert await ids(recipient="zags") == [1, 3, 4]
    assert await ids(recipient="zags", state=S.ACCEPTED) == [1, 3]
    assert await ids(sender="mfc", recipient="zags", state=S.QUEUED) == [4]
    assert await ids(since=start + timedelta(minutes=2)) == [3, 4, 5]
    assert await ids(sender="portal", since=start + timedelta(minutes=3)) == [5]
    assert await ids(sender="nobody") == []


async def test_find_pages_through_everything_once(store: Journal, clock: FakeClock) -> None:
    # Three messages share each timestamp, so pages must break ties on message_id.
    expected = []
    for n in range(1, 11):
        await store.accept(new_message(n), at=clock.now())
        expected.append(message_id(n))
        if n % 3 == 0:
            clock.advance(timedelta(seconds=1))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.find(recipient="zags", limit=3, after=cursor)
        pages += 1
        assert len(page.items) <= 3
        seen.extend(r.message_id for r in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert seen == expected
    assert pages == 4


async def test_find_rejects_bad_limits_and_cursors(store: Journal) -> None:
    for limit in (0, 1001):
        with pytest.raises(ValueError, match="limit"):
            await store.find(limit=limit)
    for cursor in ("garbage!", "bm90LWEtY3Vyc29y"):
        with pytest.raises(ValueError, match="cursor"):
            await store.find(after=cursor)


# --- one final answer per request -----------------------------------------------------


async def test_a_request_is_claimed_by_one_final_answer(store: Journal, clock: FakeClock) -> None:
    await store.accept(new_message(1), at=clock.now())

    assert await store.claim_answer(message_id(1), message_id(2))
    assert await store.claim_answer(message_id(1), message_id(2))  # the same answer, retried
    assert not await store.claim_answer(message_id(1), message_id(3))
    assert not await store.claim_answer(message_id(9), message_id(3))  # no such message
    assert not await store.claim_answer("not-a-uuid", message_id(3))
    await store.accept(
        new_message(2, kind=MessageKind.RESPONSE, in_reply_to=message_id(1)), at=clock.now()
    )
    assert not await store.claim_answer(message_id(2), message_id(4))  # a response


async def test_of_answers_racing_for_a_request_one_wins(store: Journal, clock: FakeClock) -> None:
    await store.accept(new_message(1), at=clock.now())

    claims = await asyncio.gather(
        *(store.claim_answer(message_id(1), message_id(n)) for n in range(2, 12))
    )

    assert claims.count(True) == 1


async def test_requests_answered_before_the_claim_column_stay_answered(
    backend: Backend, clock: FakeClock
) -> None:
    await upgrade(backend.url, "0003", schema=backend.schema)
    async with backend.open() as journal:
        for n in (1, 2):
            await journal.accept(new_message(n), at=clock.now())
        async with backend.sql() as connection:
            await connection.execute(
                messages.update()
                .where(messages.c.message_id == message_id(1))
                .values(state=S.RESPONDED.value)
            )

        await journal.migrate()

        assert not await journal.claim_answer(message_id(1), message_id(3))
        assert await journal.claim_answer(message_id(2), message_id(3))


@contextlib.asynccontextmanager
async def traced(backend: Backend, statements: list[str]) -> AsyncIterator[Journal]:
    """A journal on ``backend`` that appends the SQL of every statement it runs to
    ``statements`` (complete once the block is left)."""
    stores = backend.stores()
    stores.database.trace = statements.append
    try:
        yield stores.journal
    finally:
        await stores.close()


def writes(statements: list[str]) -> list[str]:
    """The first word of each statement that writes (reads, among them the driver's own
    type lookups, and transaction control left out)."""
    words = [sql.split()[0].upper() for sql in statements if "typeinfo_tree" not in sql]
    return [w for w in words if w in ("INSERT", "UPDATE", "DELETE", "WITH")]


def locked_read(sql: str) -> bool:
    """A statement that reads a row to lock it (the answer's slow path)."""
    return sql.lstrip().upper().startswith("SELECT") and "FOR UPDATE" in sql


# --- SendResponse and Ack in one transaction each ----------------------------------------


def answer_to(n: int, request: int) -> NewMessage:
    return new_message(
        n, content=b"<Response/>", kind=MessageKind.RESPONSE, in_reply_to=message_id(request)
    )


@pytest.mark.parametrize(
    ("start", "final", "path"),
    [
        # answered before its sender journaled the publish (a fast push provider)
        ([], True, [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.RESPONDED]),
        ([S.QUEUED], True, [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.RESPONDED]),  # push
        ([S.QUEUED, S.DELIVERED], True, [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.RESPONDED]),
        (
            [S.QUEUED, S.DELIVERED, S.ACKED],
            True,
            [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.ACKED, S.RESPONDED],
        ),
        ([], False, [S.ACCEPTED, S.QUEUED, S.DELIVERED]),  # an interim status
        ([S.QUEUED, S.DELIVERED], False, [S.ACCEPTED, S.QUEUED, S.DELIVERED]),
    ],
)
# The request as the router read it: not given, read just before, read before it moved.
@pytest.mark.parametrize("seen", ["none", "now", "stale"])
async def test_an_answer_moves_its_request_on_from_where_it_is_now(
    store: Journal,
    clock: FakeClock,
    start: list[MessageState],
    final: bool,
    path: list[S],
    seen: str,
) -> None:
    await store.accept(new_message(1), at=clock.now())
    before = await store.get(message_id(1))
    await drive(store, clock, message_id(1), start)
    read = {"none": None, "now": await store.get(message_id(1)), "stale": before}[seen]

    answered = await store.answer(
        answer_to(2, 1), final=final, at=clock.now(), actor="zags", seen=read
    )

    assert answered.result is not None
    assert answered.result.outcome is AcceptOutcome.ACCEPTED
    assert answered.request.state is path[-1]
    assert (await store.get(message_id(2))).state is S.ACCEPTED
    assert [t.to_state for t in await store.history(message_id(1))] == path
    assert dataclasses.replace(await store.get(message_id(1)), xml=None) == answered.request


@pytest.mark.parametrize("given", [False, True])
async def test_a_second_final_answer_writes_nothing_and_a_retry_is_a_duplicate(
    store: Journal, clock: FakeClock, given: bool
) -> None:
    await store.accept(new_message(1), at=clock.now())
    seen = await store.get(message_id(1)) if given else None  # read before either answer
    first = await store.answer(answer_to(2, 1), final=True, at=clock.now(), seen=seen)

    second = await store.answer(answer_to(3, 1), final=True, at=clock.now(), seen=seen)
    retry = await store.answer(answer_to(2, 1), final=True, at=clock.now(), seen=seen)

    assert first.result is not None
    assert first.result.outcome is AcceptOutcome.ACCEPTED
    assert second.result is None
    assert second.request.state is S.RESPONDED
    with pytest.raises(NotFound):
        await store.get(message_id(3))
    assert retry.result is not None
    assert retry.result.outcome is AcceptOutcome.DUPLICATE
    assert len(await store.history(message_id(1))) == 4  # moved once


async def test_answering_an_unknown_request_is_not_found(store: Journal, clock: FakeClock) -> None:
    with pytest.raises(NotFound):
        await store.answer(answer_to(2, 1), final=True, at=clock.now())
    with pytest.raises(NotFound):
        await store.get(message_id(2))


async def test_the_ack_of_the_final_answer_settles_its_request(
    store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    await store.answer(answer_to(2, 1), final=False, at=clock.now())  # interim
    await store.answer(answer_to(3, 1), final=True, at=clock.now())
    for response in (2, 3):
        await drive(store, clock, message_id(response), [S.QUEUED, S.DELIVERED])

    interim = await store.acknowledge(message_id(2), at=clock.now(), actor="bus")
    assert (interim.moved, interim.record.state) == (True, S.ACKED)
    assert (await store.get(message_id(1))).state is S.RESPONDED  # not by an interim one

    acked = await store.acknowledge(message_id(3), at=clock.now(), actor="bus")
    assert (acked.moved, acked.record.state) == (True, S.ACKED)
    assert (await store.get(message_id(1))).state is S.RESPONSE_DELIVERED

    again = await store.acknowledge(message_id(3), at=clock.now(), actor="bus")
    assert (again.moved, again.record.state) == (False, S.ACKED)
    with pytest.raises(NotFound):
        await store.acknowledge(message_id(9), at=clock.now())


async def test_an_ack_of_an_answered_request_changes_nothing(
    store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    await drive(store, clock, message_id(1), [S.QUEUED, S.DELIVERED])
    await store.answer(answer_to(2, 1), final=True, at=clock.now())

    acked = await store.acknowledge(message_id(1), at=clock.now(), actor="bus")

    assert (acked.moved, acked.record.state) == (False, S.RESPONDED)
    assert len(await store.history(message_id(1))) == 4


@pytest.mark.parametrize(
    ("start", "path"),
    [
        ([S.QUEUED], [S.ACCEPTED, S.QUEUED, S.DELIVERED]),
        # handed out before its publisher journaled the broker's confirm
        ([], [S.ACCEPTED, S.QUEUED, S.DELIVERED]),
    ],
)
async def test_deliver_moves_a_queued_or_a_just_published_message(
    store: Journal, clock: FakeClock, start: list[S], path: list[S]
) -> None:
    await store.accept(new_message(1), at=clock.now())
    await drive(store, clock, message_id(1), start)

    delivered = await store.deliver(
        message_id(1), at=clock.now(), reason="attempt 1", queued_reason="seen", actor="bus"
    )

    assert delivered.state is S.DELIVERED
    assert delivered.version == 3
    history = await store.history(message_id(1))
    assert [t.to_state for t in history] == path
    assert history[-1].reason == "attempt 1"
    assert history[-1].actor == "bus"
    if not start:
        assert history[1].reason == "seen"
    assert dataclasses.replace(await store.get(message_id(1)), xml=None) == delivered


async def test_deliver_refuses_a_message_handed_out_already(
    store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    delivered = await drive(store, clock, message_id(1), [S.QUEUED, S.DELIVERED])
    with pytest.raises(TransitionConflict) as refused:
        await store.deliver(message_id(1), at=clock.now(), reason="again", queued_reason=None)
    assert refused.value.record == delivered
    assert len(await store.history(message_id(1))) == 3
    with pytest.raises(NotFound):
        await store.deliver(message_id(2), at=clock.now(), reason=None, queued_reason=None)


async def connect(backend: Backend) -> asyncpg.Connection:
    """A connection of its own to ``backend``'s schema, to hold rows locked from outside."""
    return await asyncpg.connect(
        libpq_url(backend.url), server_settings={"search_path": backend.schema or "public"}
    )


async def blocked(connection: asyncpg.Connection, query: str) -> None:
    """Return once a statement whose text is ``LIKE query`` waits for a lock."""
    waiting = 0
    async with asyncio.timeout(10):
        while not waiting:
            waiting = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE $1",
                query,
            )


async def test_deliver_waits_for_the_publisher_queueing_it_and_moves_on_from_there(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    """The consumer's statement starts while the publisher's QUEUED move is uncommitted
    (the usual race of a gateway consuming what it publishes): it waits for the row and
    delivers it from QUEUED, not refusing it as its snapshot's ACCEPTED."""
    if backend.name != "postgresql":
        pytest.skip("SQLite has one writer: nothing runs in between")
    await store.accept(new_message(1), at=clock.now())
    publisher = await connect(backend)
    try:
        queueing = publisher.transaction()
        await queueing.start()
        await publisher.execute(
            "UPDATE messages SET state = 'QUEUED', version = 2 WHERE message_id = $1; ",
            message_id(1),
        )
        await publisher.execute(
            "INSERT INTO transitions (message_id, from_state, to_state, at, actor) "
            "VALUES ($1, 'ACCEPTED', 'QUEUED', now(), 'publisher')",
            message_id(1),
        )
        delivering = asyncio.create_task(
            store.deliver(message_id(1), at=clock.now(), reason="attempt 1", queued_reason="q")
        )
        await blocked(publisher, "%WITH old AS%")  # until the statement waits for the row lock
        await queueing.commit()
        delivered = await delivering
    finally:
        await publisher.close()
    assert (delivered.state, delivered.version) == (S.DELIVERED, 3)
    history = await store.history(message_id(1))
    assert [(t.to_state, t.actor) for t in history] == [
        (S.ACCEPTED, None), (S.QUEUED, "publisher"), (S.DELIVERED, None)
    ]  # fmt: skip


async def test_of_copies_delivered_at_once_one_is_handed_out(
    store: Journal, clock: FakeClock
) -> None:
    for n in range(1, 21):  # ACCEPTED and QUEUED ones alike
        await store.accept(new_message(n), at=clock.now())
        if n % 2:
            await store.transition(message_id(n), S.QUEUED, at=clock.now())

    async def deliver(n: int) -> MessageRecord | None:
        """The record delivered, or as a refused copy found it."""
        try:
            return await store.deliver(message_id(n), at=clock.now(), reason="a", queued_reason="q")
        except TransitionConflict as refused:
            return refused.record

    outcomes = await asyncio.gather(*(deliver(n) for n in range(1, 21) for _ in range(3)))

    won = [o for o in outcomes if o is not None and o.state is S.DELIVERED]
    assert len(won) >= 20  # the winners, and refused copies that saw them
    # A refused copy's record is never older than the state it was sent to move.
    assert all(o is not None for o in outcomes)
    for n in range(1, 21):
        history = [t.to_state for t in await store.history(message_id(n))]
        assert history == [S.ACCEPTED, S.QUEUED, S.DELIVERED]


async def test_a_refused_move_tells_the_message_as_it_found_it(
    store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())
    delivered = await drive(store, clock, message_id(1), [S.QUEUED, S.DELIVERED])
    with pytest.raises(TransitionConflict) as refused:
        await store.transition(
            message_id(1), S.QUEUED, at=clock.now(), expected_state=S.ACCEPTED, expected_version=1
        )
    assert refused.value.record == delivered


async def test_a_refused_conditional_move_is_one_write_and_one_statement_on_postgresql(
    backend: Backend, clock: FakeClock
) -> None:
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        await journal.migrate()
        await journal.accept(new_message(1), at=clock.now())
        # The trace is told soon after a statement: a read's round trip lets it through.
        await journal.get(message_id(1))
        statements.clear()
        with pytest.raises(TransitionConflict):
            await journal.transition(
                message_id(1), S.DELIVERED, at=clock.now(), expected_state=S.QUEUED
            )
        with pytest.raises(NotFound):
            await journal.transition(
                message_id(2), S.DELIVERED, at=clock.now(), expected_state=S.QUEUED
            )
    if backend.name == "postgresql":  # one statement each, the answer included
        assert writes(statements) == ["WITH", "WITH"]
    else:  # a local transaction: the move, then a look at why it did not match
        assert writes(statements) == ["UPDATE", "UPDATE"]


async def test_an_answer_to_a_request_as_seen_is_one_statement_on_postgresql(
    backend: Backend, clock: FakeClock
) -> None:
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        await journal.migrate()
        await journal.accept(new_message(1), at=clock.now())
        await journal.transition(message_id(1), S.QUEUED, at=clock.now())
        seen = await journal.get(message_id(1))
        statements.clear()
        answered = await journal.answer(answer_to(2, 1), final=True, at=clock.now(), seen=seen)
        assert answered.request.state is S.RESPONDED
        assert answered.result is not None
        assert answered.result.outcome is AcceptOutcome.ACCEPTED
        assert [t.to_state for t in await journal.history(message_id(1))] == [
            S.ACCEPTED,
            S.QUEUED,
            S.DELIVERED,
            S.RESPONDED,
        ]
        assert [t.actor for t in await journal.history(message_id(2))] == [None]
    if backend.name == "postgresql":  # the claim, the response, the moves: one statement
        assert writes(statements) == ["WITH"]
        assert not any(locked_read(sql) for sql in statements)  # no read first
        assert not any(sql.startswith("BEGIN") for sql in statements)  # all or nothing


#: The statements of a message's and a service request's path, by what they do.
HOT_STATEMENTS = {
    "accept": journal_pg._ACCEPT,
    "accept together": journal_pg._ACCEPT_MANY,
    "move": journal_pg._MOVE,
    "deliver": journal_pg._DELIVER,
    "acknowledge": journal_pg._ACKNOWLEDGE,
    "advance": journal_pg._ADVANCE,
    "answer": journal_pg._ANSWER,
    "answer rejecting": journal_pg._ANSWER_REJECTION,
    "request for answer": journal_pg.PgJournal.REQUEST_FOR_ANSWER,
    "claim": journal_pg.PgJournal.CLAIM,
    "take reply": replies_pg.take_reply_sql(0),
    "take reply with two along": replies_pg.take_reply_sql(2),
    "create service request": requests_pg._CREATE,
    "service request by message": requests_pg.PgServiceRequests.LINKED,
    "save service request": requests_pg._SAVE,
    "settle callback": requests_pg._SETTLE_CALLBACK,
}


async def test_hot_statements_find_their_rows_by_key_while_the_journal_has_no_statistics(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    """A new journal has no statistics until autovacuum's first ANALYZE, and a prepared
    statement keeps its plan: one planned then must not read a table, or an index that
    is not the key, to find a row (the answer did: every request, for every answer)."""
    if backend.name != "postgresql":
        pytest.skip("SQLite plans an equality on the key as a key lookup")
    for n in range(1, 301):
        await store.accept(new_message(n), at=clock.now())
    connection = await connect(backend)
    plans: dict[str, str] = {}
    try:
        assert await connection.fetchval(
            "SELECT last_analyze IS NULL AND last_autoanalyze IS NULL "
            "FROM pg_stat_user_tables WHERE relname = 'messages' AND schemaname = $1",
            backend.schema,
        )
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        for n, (name, sql) in enumerate(HOT_STATEMENTS.items()):
            types = [t.name for t in (await connection.prepare(sql)).get_parameters()]
            await connection.execute(f"PREPARE hot{n}({', '.join(types)}) AS {sql}")
            nulls = ", ".join("NULL" for _ in types)
            explained = await connection.fetch(f"EXPLAIN EXECUTE hot{n}({nulls})")
            plans[name] = "\n".join(row[0] for row in explained)
    finally:
        await connection.close()
    scans = ("Seq Scan on messages", "Seq Scan on service_requests", " using ix_")
    assert {name: plan for name, plan in plans.items() if any(s in plan for s in scans)} == {}


async def test_an_answer_to_a_request_moved_along_its_path_since_is_one_statement(
    backend: Backend, clock: FakeClock
) -> None:
    """Seen ACCEPTED (a push provider answered before the publisher's QUEUED move),
    QUEUED by the time the answer is written: the rest of the path, no read first."""
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        await journal.migrate()
        await journal.accept(new_message(1), at=clock.now())
        seen = await journal.get(message_id(1))
        await journal.transition(message_id(1), S.QUEUED, at=clock.now())
        await journal.get(message_id(1))  # lets the trace of the move through
        statements.clear()
        answered = await journal.answer(answer_to(2, 1), final=True, at=clock.now(), seen=seen)
        assert answered.request.state is S.RESPONDED
        assert answered.request.version == seen.version + 3
        assert answered.result is not None
        history = await journal.history(message_id(1))
        assert [(t.from_state, t.to_state) for t in history] == [
            (None, S.ACCEPTED),
            (S.ACCEPTED, S.QUEUED),
            (S.QUEUED, S.DELIVERED),
            (S.DELIVERED, S.RESPONDED),
        ]
    if backend.name == "postgresql":
        assert writes(statements) == ["WITH"]
        assert not any(locked_read(sql) for sql in statements)


async def test_an_answer_whose_twin_commits_its_response_meanwhile_writes_nothing_itself(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    """The one statement finds the response new, then waits on its insert for a twin
    that journaled the same response (uncommitted): once the twin commits, the insert
    does nothing, so neither does the request's move (all or nothing with no
    transaction around it). The locked path then decides on the twin's rows."""
    if backend.name != "postgresql":
        pytest.skip("SQLite has one writer: nothing runs in between")
    await store.accept(new_message(1), at=clock.now())
    await store.transition(message_id(1), S.QUEUED, at=clock.now())
    seen = await store.get(message_id(1))
    response = answer_to(2, 1)
    twin = await connect(backend)
    try:
        journaling = twin.transaction()
        await journaling.start()
        await twin.execute(
            "INSERT INTO messages (message_id, kind, sender, recipient, message_type, "
            "in_reply_to, content_sha256, xml, state, created_at, updated_at, expires_at, "
            "test_message, version) VALUES ($1, 'response', $2, $3, $4, $5, $6, $7, "
            "'ACCEPTED', now(), now(), NULL, false, 1)",
            response.message_id,
            response.sender,
            response.recipient,
            response.message_type,
            message_id(1),
            hashlib.sha256(response.xml or b"").hexdigest(),
            response.xml,
        )
        await twin.execute(
            "INSERT INTO transitions (message_id, from_state, to_state, at, actor) "
            "VALUES ($1, NULL, 'ACCEPTED', now(), 'twin')",
            response.message_id,
        )
        answering = asyncio.create_task(
            store.answer(response, final=True, at=clock.now(), seen=seen)
        )
        await blocked(twin, "%array_position%")  # until the statement waits for the twin's row
        await journaling.commit()
        answered = await answering
    finally:
        await twin.close()
    # The twin's response stands; the request moves once, by the locked path.
    assert answered.result is not None
    assert answered.result.outcome is AcceptOutcome.DUPLICATE  # not ours to count
    assert answered.request.state is S.RESPONDED
    assert [t.to_state for t in await store.history(message_id(1))] == [
        S.ACCEPTED,
        S.QUEUED,
        S.DELIVERED,
        S.RESPONDED,
    ]
    history = await store.history(response.message_id)
    assert [(t.to_state, t.actor) for t in history] == [(S.ACCEPTED, "twin")]  # not twice


async def test_an_answer_to_a_request_off_its_path_since_is_decided_on_the_row(
    backend: Backend, clock: FakeClock
) -> None:
    """Seen QUEUED, expired since: not on the path, so the locked path decides."""
    async with traced(backend, []) as journal:
        await journal.migrate()
        await journal.accept(new_message(1), at=clock.now())
        await journal.transition(message_id(1), S.QUEUED, at=clock.now())
        seen = await journal.get(message_id(1))
        await journal.transition(message_id(1), S.EXPIRED, at=clock.now())
        answered = await journal.answer(answer_to(2, 1), final=True, at=clock.now(), seen=seen)
        assert answered.request.state is S.EXPIRED
        assert [t.to_state for t in await journal.history(message_id(1))] == [
            S.ACCEPTED,
            S.QUEUED,
            S.EXPIRED,
        ]


# --- the pull replay guard -----------------------------------------------------------


def digest(n: int) -> str:
    return hashlib.sha256(f"signed-info-{n}".encode()).hexdigest()


async def guard_rows(backend: Backend) -> list[str]:
    async with backend.sql() as connection:
        rows = await connection.execute(select(replay_guard.c.digest))
        return sorted(row.digest for row in rows)


async def test_a_digest_is_remembered_once(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    until = clock.now() + timedelta(minutes=10)
    assert await store.remember(digest(1), "ZAGS", expires_at=until, now=clock.now())
    assert not await store.remember(digest(1), "ZAGS", expires_at=until, now=clock.now())
    assert await store.remember(digest(2), "ZAGS", expires_at=until, now=clock.now())
    assert await guard_rows(backend) == sorted([digest(1), digest(2)])


async def test_of_processes_racing_with_one_digest_one_remembers_it_first(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    others = [backend.open() for _ in range(3)]  # independent engines, as separate processes
    try:
        until = clock.now() + timedelta(minutes=10)
        firsts = await asyncio.gather(
            *(
                journal.remember(digest(1), "ZAGS", expires_at=until, now=clock.now())
                for journal in [store, *others]
                for _ in range(4)
            )
        )
    finally:
        for journal in others:
            await journal.close()
    assert firsts.count(True) == 1


async def test_expired_digests_are_forgotten_now_and_then_never_early(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    start = clock.now()
    short, long = start + timedelta(minutes=2), start + timedelta(minutes=10)
    await store.remember(digest(1), "ZAGS", expires_at=short, now=start)
    await store.remember(digest(2), "MVD_MIGR", expires_at=long, now=start)

    # Past digest 1's end, but within a purge interval of the last purge: kept.
    at = start + REPLAY_PURGE_INTERVAL / 2
    assert not await store.remember(digest(2), "MVD_MIGR", expires_at=long, now=at)
    clock.set(short + timedelta(seconds=1))
    assert not await store.remember(digest(2), "MVD_MIGR", expires_at=long, now=clock.now())
    assert await guard_rows(backend) == [digest(2)]  # digest 1 was forgotten, 2 was not

    clock.set(long + timedelta(seconds=1))
    assert await store.remember(digest(2), "MVD_MIGR", expires_at=long, now=clock.now())


async def test_a_pull_remembers_its_digest_then_delivers(store: Journal, clock: FakeClock) -> None:
    until = clock.now() + timedelta(minutes=10)
    await store.accept(new_message(1), at=clock.now())
    await store.transition(message_id(1), S.QUEUED, at=clock.now())

    async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()) as window:
        assert window.first
        delivered = await store.deliver(
            message_id(1), at=clock.now(), reason="a", queued_reason=None, actor="bus"
        )
        with pytest.raises(TransitionConflict):  # not QUEUED any more
            await store.deliver(
                message_id(1), at=clock.now(), reason="a", queued_reason=None, actor="bus"
            )
    async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()) as window:
        assert not window.first  # a replay

    assert delivered.state is S.DELIVERED
    assert (await store.get(message_id(1))).state is S.DELIVERED


async def test_a_failed_pull_remembers_nothing(store: Journal, clock: FakeClock) -> None:
    until = clock.now() + timedelta(minutes=10)
    with pytest.raises(NotFound):
        async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()):
            await store.deliver(
                message_id(7), at=clock.now(), reason=None, queued_reason=None, actor="bus"
            )

    assert await store.remember(digest(1), "ZAGS", expires_at=until, now=clock.now())


async def test_a_pull_failing_after_its_delivery_forgets_the_digest_not_the_delivery(
    store: Journal, clock: FakeClock
) -> None:
    until = clock.now() + timedelta(minutes=10)
    await store.accept(new_message(1), at=clock.now())
    await store.transition(message_id(1), S.QUEUED, at=clock.now())

    async def deliver_then_fail() -> None:
        await store.deliver(
            message_id(1), at=clock.now(), reason=None, queued_reason=None, actor="bus"
        )
        raise RuntimeError("the reply could not be built")

    with pytest.raises(RuntimeError):
        async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()):
            await deliver_then_fail()

    # No transaction spans the pull: the move stays, and the retry is served.
    assert (await store.get(message_id(1))).state is S.DELIVERED
    async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()) as window:
        assert window.first


async def test_a_failing_replay_leaves_the_digest_of_the_pull_it_replays(
    store: Journal, clock: FakeClock
) -> None:
    until = clock.now() + timedelta(minutes=10)
    async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()) as window:
        assert window.first

    def refuse_a_replay(window: PullWindow) -> None:
        if not window.first:
            raise RuntimeError("refused as a replay")

    with pytest.raises(RuntimeError):  # raised: a replay
        async with store.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()) as window:
            refuse_a_replay(window)

    assert not await store.remember(digest(1), "ZAGS", expires_at=until, now=clock.now())


async def test_a_pull_is_a_statement_and_its_delivery_another_without_a_transaction(
    backend: Backend, clock: FakeClock
) -> None:
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        await journal.migrate()
        until = clock.now() + timedelta(minutes=10)
        await journal.accept(new_message(1), at=clock.now())
        await journal.transition(message_id(1), S.QUEUED, at=clock.now())
        await journal.remember(digest(0), "ZAGS", expires_at=until, now=clock.now())  # purged
        await asyncio.sleep(0)  # the driver's trace of the statements so far, then count
        statements.clear()
        async with journal.pull(digest(1), "ZAGS", expires_at=until, now=clock.now()):
            await journal.deliver(
                message_id(1), at=clock.now(), reason=None, queued_reason=None, actor="bus"
            )
        await asyncio.sleep(0)
        pull = list(statements)
        statements.clear()
        async with journal.pull(digest(2), "ZAGS", expires_at=until, now=clock.now()):
            pass  # an empty poll
        with pytest.raises(NotFound):  # a failed pull: forgotten again
            async with journal.pull(digest(3), "ZAGS", expires_at=until, now=clock.now()):
                await journal.deliver(
                    message_id(7), at=clock.now(), reason=None, queued_reason=None, actor="bus"
                )
    if backend.name == "postgresql":  # autocommit: one round trip each, no BEGIN/COMMIT
        assert [sql.split()[0].upper() for sql in pull] == ["INSERT", "WITH"]
        assert [sql.split()[0].upper() for sql in statements] == [
            "INSERT",
            "INSERT",
            "WITH",
            "DELETE",
        ]
    else:  # SQLite: the digest in one local transaction, the move and its history in another
        assert writes(pull) == ["INSERT", "UPDATE", "INSERT"]
        assert writes(statements) == ["INSERT", "INSERT", "UPDATE", "DELETE"]


async def test_remembering_is_one_statement_and_the_purge_comes_now_and_then(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        until = clock.now() + timedelta(minutes=10)
        for n in range(5):
            clock.advance(REPLAY_PURGE_INTERVAL / 4)
            await journal.remember(digest(n), "ZAGS", expires_at=until, now=clock.now())
    assert writes(statements) == [
        "DELETE", "INSERT", "INSERT", "INSERT", "INSERT", "DELETE", "INSERT"
    ]  # fmt: skip


# --- schema and migrations ------------------------------------------------------------


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_are_idempotent_and_match_the_tables(
    backend: Backend, store: Journal, clock: FakeClock
) -> None:
    await store.accept(new_message(1), at=clock.now())

    await store.migrate()
    await store.migrate()

    assert await current_revision(backend.url, schema=backend.schema) == head_revision()
    assert (await store.get(message_id(1))).state is S.ACCEPTED
    async with backend.sql() as connection:
        assert await connection.run_sync(_schema_differences) == []


async def test_upgrade_from_a_plain_url(backend: Backend) -> None:
    await upgrade(backend.url, schema=backend.schema)
    await upgrade(backend.url, schema=backend.schema)

    assert await current_revision(backend.url, schema=backend.schema) == head_revision()


# --- embedded defaults ----------------------------------------------------------------


async def test_in_memory_sqlite_is_a_full_journal(clock: FakeClock) -> None:
    async with open_stores("sqlite://") as stores:
        journal = stores.journal
        assert await stores.database.revision() is None
        await journal.migrate()
        assert await stores.database.revision() == head_revision()
        await journal.accept(new_message(1), at=clock.now())
        await asyncio.gather(
            journal.transition(message_id(1), S.QUEUED, at=clock.now()),
            journal.get(message_id(1)),
            journal.find(),
        )
        assert (await journal.get(message_id(1))).state is S.QUEUED


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./smevbus.db", "sqlite+aiosqlite:///./smevbus.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite+aiosqlite:////var/lib/smevbus.db", "sqlite+aiosqlite:////var/lib/smevbus.db"),
        ("postgresql://bus@db:5432/smev", "postgresql+asyncpg://bus@db:5432/smev"),
        ("postgres://bus@db/smev", "postgresql+asyncpg://bus@db/smev"),
        ("postgresql+asyncpg://bus@db/smev", "postgresql+asyncpg://bus@db/smev"),
    ],
)
def test_plain_urls_get_async_drivers(given: str, expected: str) -> None:
    assert async_url(given) == make_url(expected)


@pytest.mark.parametrize("url", ["mysql://root@db/smev", "postgresql+psycopg2://bus@db/smev"])
def test_unsupported_databases_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        async_url(url)
