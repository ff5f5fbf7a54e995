"""A reply taken into its service request (``Journal.take_reply``): the response's moves
and the service request's save, all or nothing; one suite on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import timedelta

import pytest

from gateway.core.aggregation import on_answer, on_cancel, on_sent
from gateway.core.clock import FakeClock
from gateway.core.errors import NotFound
from gateway.core.lifecycle import MessageState
from gateway.store import Journal, ServiceRequests, replies_pg
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.replies import AlongReply, ReplyOutcome, ReplySave, ReplyTaken
from gateway.store.service_requests import ServiceRequestRecord
from tests.integration import store_fixtures
from tests.integration.store_fixtures import Backend
from tests.integration.test_service_request_store import PORTAL, T0, mid, new_request, rid
from tests.integration.test_store import (
    answer_to,
    connect,
    drive,
    message_id,
    new_message,
    traced,
    writes,
)

# The fixtures, bound here so that they stay local to this module.
postgres_url = store_fixtures.postgres_url
backend = store_fixtures.backend
store = store_fixtures.store
clock = store_fixtures.clock

S = MessageState
REQUEST, RESPONSE = message_id(1), message_id(2)


@pytest.fixture
def requests(store: Journal) -> ServiceRequests:
    return store.service_requests()


async def answered(store: Journal, clock: FakeClock, start: list[MessageState]) -> None:
    """A request answered (finally) by RESPONSE, which is then moved along ``start``."""
    await store.accept(new_message(1), at=clock.now())
    await store.transition(REQUEST, S.QUEUED, at=clock.now())
    await store.answer(answer_to(2, 1), final=True, at=clock.now())
    await drive(store, clock, RESPONSE, start)


async def pending(requests: ServiceRequests, *, callback: bool = False) -> ServiceRequestRecord:
    """A service request whose part ``birth-record`` was sent as REQUEST."""
    state = on_sent(new_request(1), "birth-record", mid(1), T0)
    url = "https://portal.example/done" if callback else None
    record, _ = await requests.create(state, PORTAL, callback_url=url)
    return record


def with_answer(record: ServiceRequestRecord) -> ReplySave:
    return ReplySave(on_answer(record.state, "birth-record", {"n": "1"}, T0).state, record.version)


async def take(
    store: Journal,
    clock: FakeClock,
    save: ReplySave | None,
    message: str = RESPONSE,
    along: Sequence[AlongReply] = (),
) -> ReplyTaken:
    return await store.take_reply(
        message,
        save,
        at=clock.now(),
        reason="attempt 1",
        queued_reason="seen",
        actor="bus",
        along=along,
    )


#: A second request (3) answered by a second reply (4), and a third reply (6) to 5.
SECOND = message_id(4)
ALONG = [AlongReply(SECOND, "attempt 2", "handed over"), AlongReply(message_id(6), None, None)]


async def two_more_answered(store: Journal, clock: FakeClock, start: list[MessageState]) -> None:
    """Requests 3 and 5 answered by 4 and 6; 4 is then moved along ``start``."""
    for request in (3, 5):
        await store.accept(new_message(request), at=clock.now())
        await store.answer(answer_to(request + 1, request), final=True, at=clock.now())
    await drive(store, clock, SECOND, start)


@pytest.mark.parametrize(
    ("start", "path"),
    [
        ([], [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.ACKED]),  # before its publisher's QUEUED
        ([S.QUEUED], [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.ACKED]),
        ([S.QUEUED, S.DELIVERED], [S.ACCEPTED, S.QUEUED, S.DELIVERED, S.ACKED]),  # lapsed
    ],
)
async def test_a_reply_is_acked_its_request_settled_and_its_service_request_saved(
    store: Journal,
    requests: ServiceRequests,
    clock: FakeClock,
    start: list[MessageState],
    path: list[MessageState],
) -> None:
    await answered(store, clock, start)
    record = await pending(requests)
    save = with_answer(record)
    clock.advance(timedelta(seconds=1))

    taken = await take(store, clock, save)

    assert taken.outcome is ReplyOutcome.TAKEN
    assert (taken.record.state, taken.record.version) == (S.ACKED, len(path))
    assert dataclasses.replace(await store.get(RESPONSE), xml=None) == taken.record
    history = await store.history(RESPONSE)
    assert [t.to_state for t in history] == path
    reasons = {S.QUEUED: "seen", S.DELIVERED: "attempt 1", S.ACKED: None}
    taken_steps = history[len(start) + 1 :]
    assert [(t.reason, t.actor) for t in taken_steps] == [
        (reasons[t.to_state], "bus") for t in taken_steps
    ]
    assert (await store.get(REQUEST)).state is S.RESPONSE_DELIVERED
    assert (await store.history(REQUEST))[-1].actor == "bus"
    assert taken.saved is not None
    assert (taken.saved.state, taken.saved.version) == (save.state, record.version + 1)
    assert taken.saved.updated_at == clock.now()
    assert await requests.get(rid(1)) == taken.saved


async def test_a_stale_service_request_writes_nothing(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    record = await pending(requests)
    cancelled = await requests.save(on_cancel(record.state, T0).state, record.version, at=T0)

    conflict = await take(store, clock, with_answer(record))  # from the version before

    assert conflict.outcome is ReplyOutcome.CONFLICT
    assert conflict.saved is None
    assert conflict.record.state is S.QUEUED
    assert len(await store.history(RESPONSE)) == 2
    assert (await store.get(REQUEST)).state is S.RESPONDED
    assert await requests.get(rid(1)) == cancelled
    # Re-read and applied again: taken.
    again = await take(store, clock, with_answer(cancelled))
    assert again.outcome is ReplyOutcome.TAKEN


async def test_an_unknown_service_request_is_a_conflict(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    stray = ReplySave(new_request(7), 1)
    assert (await take(store, clock, stray)).outcome is ReplyOutcome.CONFLICT
    assert (await store.get(RESPONSE)).state is S.QUEUED


@pytest.mark.parametrize("gone", [S.ACKED, S.EXPIRED])
async def test_a_copy_of_a_reply_taken_already_writes_nothing(
    store: Journal, requests: ServiceRequests, clock: FakeClock, gone: MessageState
) -> None:
    await answered(store, clock, [S.QUEUED, S.DELIVERED, gone])
    record = await pending(requests)

    copy = await take(store, clock, with_answer(record))

    assert (copy.outcome, copy.record.state, copy.saved) == (ReplyOutcome.NOT_TAKEN, gone, None)
    assert await requests.get(rid(1)) == record
    assert len(await store.history(RESPONSE)) == 4


async def test_a_reply_that_changes_nothing_only_moves_the_journal(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    record = await pending(requests)

    taken = await take(store, clock, None)

    assert (taken.outcome, taken.record.state, taken.saved) == (ReplyOutcome.TAKEN, S.ACKED, None)
    assert (await store.get(REQUEST)).state is S.RESPONSE_DELIVERED
    assert await requests.get(rid(1)) == record
    assert (await take(store, clock, None)).outcome is ReplyOutcome.NOT_TAKEN


async def test_an_unknown_reply_is_not_found(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    record = await pending(requests)
    with pytest.raises(NotFound):
        await take(store, clock, with_answer(record), message_id(9))
    assert await requests.get(rid(1)) == record


async def test_a_final_save_makes_its_callback_due(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    record = await pending(requests, callback=True)
    final = ReplySave(on_cancel(record.state, T0).state, record.version)

    taken = await take(store, clock, final)

    assert taken.saved is not None
    assert taken.saved.callback is not None
    assert str(taken.saved.callback.state) == "due"
    assert taken.saved.callback.next_attempt_at == clock.now()


async def test_a_final_save_can_claim_its_callback_for_the_saving_process(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    record = await pending(requests, callback=True)
    lease_end = clock.now() + timedelta(seconds=60)
    final = ReplySave(on_cancel(record.state, T0).state, record.version, lease_end)

    taken = await take(store, clock, final)

    assert taken.saved is not None
    callback = taken.saved.callback
    assert callback is not None
    # Claimed as the outbox claims: attempt 1 counted, leased until lease_end.
    assert (str(callback.state), callback.attempts) == ("due", 1)
    assert callback.next_attempt_at == lease_end
    outbox = CallbackOutbox(requests)
    assert await outbox.claim_due(clock.now(), lease=timedelta(seconds=60)) == []
    # A process that dies before its POST leaves the lease to run out: claimed again.
    again = await outbox.claim_due(lease_end, lease=timedelta(seconds=60))
    assert [(r.id, r.callback.attempts if r.callback else None) for r in again] == [(record.id, 2)]


async def test_a_save_that_does_not_end_the_request_claims_nothing(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    record = await pending(requests, callback=True)
    save = dataclasses.replace(with_answer(record), claim_callback_until=clock.now())

    taken = await take(store, clock, save)

    assert taken.saved is not None
    assert not taken.saved.state.final
    assert taken.saved.callback is not None
    assert (str(taken.saved.callback.state), taken.saved.callback.attempts) == ("pending", 0)


async def test_of_copies_and_replies_racing_from_one_version_one_is_taken(
    backend: Backend, store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    await store.accept(new_message(3), at=clock.now())  # a second request and its reply
    await store.answer(answer_to(4, 3), final=True, at=clock.now())
    await store.transition(message_id(4), S.QUEUED, at=clock.now())
    record = await pending(requests)
    other_reply = ReplySave(on_answer(record.state, "parent-inn", {}, T0).state, record.version)
    others = [backend.open() for _ in range(3)]  # independent pools, as processes
    journals = [store, *others, store, *others]
    try:
        outcomes = await asyncio.gather(
            *(take(j, clock, with_answer(record)) for j in journals),
            take(others[0], clock, other_reply, message_id(4)),
        )
    finally:
        for other in others:
            await other.close()

    taken = [o for o in outcomes if o.outcome is ReplyOutcome.TAKEN]
    assert len(taken) == 1, outcomes
    assert all(o.outcome is not ReplyOutcome.TAKEN or o.saved is not None for o in outcomes)
    stored = await requests.get(rid(1))
    assert (stored.version, stored) == (record.version + 1, taken[0].saved)
    for response in (RESPONSE, message_id(4)):  # ACCEPTED, QUEUED, then DELIVERED, ACKED once
        moves = [t.to_state for t in await store.history(response)]
        won = taken[0].record.message_id == response
        assert moves == [S.ACCEPTED, S.QUEUED, *([S.DELIVERED, S.ACKED] if won else [])]
    assert (await store.get(RESPONSE)).state is (
        S.ACKED if taken[0].record.message_id == RESPONSE else S.QUEUED
    )


@pytest.mark.parametrize("along", [[], ALONG])
async def test_a_reply_with_its_save_is_one_statement_on_postgresql(
    backend: Backend, clock: FakeClock, along: list[AlongReply]
) -> None:
    statements: list[str] = []
    async with traced(backend, statements) as journal:
        await journal.migrate()
        await answered(journal, clock, [S.QUEUED])
        await two_more_answered(journal, clock, [])
        record = await pending(journal.service_requests())
        await journal.get(RESPONSE)  # the trace is told soon after: a read lets it through
        statements.clear()
        taken = await take(journal, clock, with_answer(record), along=along)
        assert taken.outcome is ReplyOutcome.TAKEN
        assert taken.along == {other.message_id for other in along}
        await journal.get(RESPONSE)
    if backend.name == "postgresql":
        assert writes(statements) == ["WITH"]


@pytest.mark.parametrize("start", [[], [S.QUEUED, S.DELIVERED]])
async def test_replies_along_are_taken_in_the_same_write_each_on_its_own_path(
    store: Journal, requests: ServiceRequests, clock: FakeClock, start: list[MessageState]
) -> None:
    await answered(store, clock, [S.QUEUED])
    await two_more_answered(store, clock, start)
    record = await pending(requests)

    taken = await take(store, clock, with_answer(record), along=ALONG)

    assert taken.outcome is ReplyOutcome.TAKEN
    assert taken.along == {SECOND, message_id(6)}
    assert taken.saved is not None
    assert taken.saved.version == record.version + 1
    second = await store.history(SECOND)
    assert [(t.to_state, t.reason) for t in second[len(start) + 1 :]] == [
        *([(S.QUEUED, "handed over"), (S.DELIVERED, "attempt 2")] if not start else []),
        (S.ACKED, None),
    ]
    assert [t.to_state for t in await store.history(message_id(6))][-1] is S.ACKED
    for request in (REQUEST, message_id(3), message_id(5)):
        assert (await store.get(request)).state is S.RESPONSE_DELIVERED


async def test_a_reply_along_that_was_taken_already_is_left_as_it_is(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    await two_more_answered(store, clock, [S.QUEUED, S.DELIVERED, S.ACKED])
    record = await pending(requests)

    taken = await take(store, clock, with_answer(record), along=ALONG)

    assert (taken.outcome, taken.along) == (ReplyOutcome.TAKEN, {message_id(6)})
    assert len(await store.history(SECOND)) == 4  # not moved again


@pytest.mark.parametrize("first", ["taken already", "stale save"])
async def test_nothing_is_taken_along_unless_the_first_reply_is(
    store: Journal, requests: ServiceRequests, clock: FakeClock, first: str
) -> None:
    await answered(
        store, clock, [S.QUEUED, S.DELIVERED, S.ACKED] if first == "taken already" else []
    )
    await two_more_answered(store, clock, [S.QUEUED])
    record = await pending(requests)
    save = with_answer(record)
    if first == "stale save":
        await requests.save(on_cancel(record.state, T0).state, record.version, at=T0)

    refused = await take(store, clock, save, along=ALONG)

    assert refused.outcome is not ReplyOutcome.TAKEN
    assert refused.along == frozenset()
    assert (await store.get(SECOND)).state is S.QUEUED
    assert (await store.get(message_id(6))).state is S.ACCEPTED


async def test_a_reply_cannot_go_along_with_itself(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    itself = AlongReply(RESPONSE, None, None)
    with pytest.raises(ValueError, match="other responses"):
        await take(store, clock, with_answer(await pending(requests)), along=[itself])
    assert (await store.get(RESPONSE)).state is S.QUEUED


async def test_takes_racing_for_the_same_replies_move_each_once(
    backend: Backend, store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    await two_more_answered(store, clock, [S.QUEUED])
    record = await pending(requests)
    other_reply = ReplySave(on_answer(record.state, "parent-inn", {}, T0).state, record.version)
    third = message_id(6)
    others = [backend.open() for _ in range(3)]  # independent pools, as processes
    try:
        outcomes = await asyncio.gather(
            take(store, clock, with_answer(record), along=ALONG),
            take(others[0], clock, other_reply, SECOND, [AlongReply(RESPONSE, None, None)]),
            take(others[1], clock, None, third),  # copies, alone
            take(others[2], clock, None, SECOND),
        )
    finally:
        for other in others:
            await other.close()

    # One save from that version: the other found it moved on, or its reply taken.
    assert [o.outcome for o in outcomes[:2]].count(ReplyOutcome.TAKEN) == 1
    moved = [o.record.message_id for o in outcomes if o.outcome is ReplyOutcome.TAKEN] + [
        along for o in outcomes for along in o.along
    ]
    assert sorted(moved) == sorted([RESPONSE, SECOND, third])  # each taken by one write
    for response in (RESPONSE, SECOND, third):
        moves = [t.to_state for t in await store.history(response)]
        assert moves.count(S.ACKED) == 1, (response, moves)


async def test_responses_go_along_only_with_a_save(
    store: Journal, requests: ServiceRequests, clock: FakeClock
) -> None:
    await answered(store, clock, [S.QUEUED])
    await two_more_answered(store, clock, [S.QUEUED])
    with pytest.raises(ValueError, match="only with a save"):
        await take(store, clock, None, along=ALONG)
    assert (await store.get(RESPONSE)).state is S.QUEUED


@pytest.mark.parametrize("along", [0, 2])
async def test_the_take_is_planned_once_for_every_execution_on_postgresql(
    backend: Backend, store: Journal, clock: FakeClock, along: int
) -> None:
    """Planned anew at each execution, the statement took twice as long (0.88 ms
    against 0.42 in a micro-benchmark): its plan must not hang on how many responses
    it takes."""
    if backend.name != "postgresql":
        pytest.skip("SQLite's take is several statements")
    sql = replies_pg.take_reply_sql(along)
    others = [AlongReply(message_id(900 + n), None, None) for n in range(along)]
    save = with_answer(await pending(store.service_requests()))
    params = replies_pg._params(message_id(999), save, clock.now(), None, None, "bus", others)
    connection = await connect(backend)
    try:
        for _ in range(8):  # PostgreSQL weighs a generic plan after the fifth
            assert await connection.fetchrow(sql, *params) is None  # no such response
        plans = await connection.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            sql,
        )
    finally:
        await connection.close()
    assert plans is not None
    assert (plans["generic_plans"], plans["custom_plans"]) == (3, 5)
