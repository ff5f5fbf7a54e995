"""The aggregator's replies arrive by push: a subscription on the portal's response queue.

Each reply is applied to its service request and journaled ACKED (its request
RESPONSE_DELIVERED) in one write with the request's save, and only then acked on the
transport; a copy redelivered after that write changes nothing and is dropped; a
reply that changes nothing is only journaled; a reply that arrives while no
subscription runs waits in its queue for the next one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import pytest
from lxml import etree

from gateway.aggregator.replies import ReplyIntake
from gateway.aggregator.service import TakeReply
from gateway.config import Settings
from gateway.core.aggregation import PartStatus, on_rejection
from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.core.service_lifecycle import ServiceState
from gateway.router.pushed import PushedReply
from gateway.router.router import Router
from gateway.store.records import MessageRecord
from gateway.store.replies import ReplyOutcome, ReplySave, ReplyTaken
from gateway.store.service_requests import ServiceRequestRecord
from gateway.testing.bus import Bus, open_bus
from gateway.transport.base import Delivery, Direction, Message
from tests.unit.test_aggregator_service import APPLICANT, PORTAL, SERVICE, World

WAIT = 10  # seconds; bounds only a failure


def world_of(bus: Bus) -> World:
    return World(bus, bus.aggregator.store, bus.aggregator)


async def submit(bus: Bus) -> ServiceRequestRecord:
    record, _ = await bus.aggregator.submit(
        service=SERVICE, applicant=APPLICANT, participant=PORTAL
    )
    return record


async def journal_states(bus: Bus, record: ServiceRequestRecord) -> set[tuple[str, str]]:
    """``(kind, state)`` of every request of ``record`` and every response to it."""
    seen: set[tuple[str, str]] = set()
    for part in record.state.parts:
        request = await bus.journal.get(str(part.message_id))
        seen.add((str(request.kind), str(request.state)))
        for response in await bus.journal.responses_to(str(part.message_id)):
            seen.add((str(response.kind), str(response.state)))
    return seen


async def test_the_running_bus_applies_pushed_replies_without_polling() -> None:
    # A day between rounds of the background loops: only the push can finish it.
    settings = Settings(api_tokens={"portal-token": PORTAL}, aggregator_interval_s=86400)
    bus = await open_bus(settings=settings, background=True)
    try:
        assert f"replies.{PORTAL}" in bus.root.supervisor.names
        record = await submit(bus)
        finalized = asyncio.create_task(bus.aggregator.finalized.wait())
        await world_of(bus).answer_all()
        await asyncio.wait_for(finalized, timeout=WAIT)
        # Cancelling the subscription waits for the replies in hand to be settled.
        await bus.root.supervisor.close()
        done = await bus.aggregator.get(str(record.id))
        assert done.status is ServiceState.COMPLETED
        assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
        assert await journal_states(bus, done) == {
            (str(MessageKind.REQUEST), str(MessageState.RESPONSE_DELIVERED)),
            (str(MessageKind.RESPONSE), str(MessageState.ACKED)),
        }
    finally:
        await bus.close()


async def posting_bus(post: Callable[[str, Mapping[str, str]], None]) -> Bus:
    """A bus consuming ``PORTAL``'s replies whose result callbacks to portal.example go
    to ``post`` (as url and headers, answered 204), with a day between the callback
    loop's outbox rounds (the first ran at start, before any request existed): only the
    claim made by a final reply's write can post one."""
    settings = Settings(
        api_tokens={"portal-token": PORTAL},
        aggregator_interval_s=86400,
        callback_hosts=("portal.example",),
    )
    bus = await open_bus(settings=settings, background=True)

    class Receiver:
        async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
            post(url, headers)
            return 204

    bus.root.callbacks.sender = Receiver()
    return bus


async def test_the_reply_that_ends_a_request_claims_its_callback_and_it_is_posted_at_once() -> None:
    posted: asyncio.Queue[tuple[str, Mapping[str, str]]] = asyncio.Queue()
    bus = await posting_bus(lambda url, headers: posted.put_nowait((url, headers)))
    by_outbox: list[uuid.UUID] = []  # what the outbox's claims returned
    claim_due = bus.root.callbacks.outbox.claim_due

    async def watched(*args: Any, **kw: Any) -> Any:
        claimed = await claim_due(*args, **kw)
        by_outbox.extend(record.id for record in claimed)
        return claimed

    bus.root.callbacks.outbox.claim_due = watched  # type: ignore[method-assign]
    settled = asyncio.Event()
    delivered = bus.root.callbacks.outbox.delivered

    async def settling(*args: Any, **kw: Any) -> bool:
        done = await delivered(*args, **kw)
        settled.set()
        return done

    bus.root.callbacks.outbox.delivered = settling  # type: ignore[method-assign]
    try:
        record, _ = await bus.aggregator.submit(
            service=SERVICE,
            applicant=APPLICANT,
            participant=PORTAL,
            callback_url="https://portal.example/done",
        )
        await world_of(bus).answer_all()
        url, headers = await asyncio.wait_for(posted.get(), timeout=WAIT)
        await asyncio.wait_for(settled.wait(), timeout=WAIT)
        assert url == "https://portal.example/done"
        assert headers["X-Smevbus-Service-Request"] == str(record.id)
        assert headers["X-Smevbus-Attempt"] == "1"
        assert record.id not in by_outbox  # claimed by the final reply's own write
        done = await bus.aggregator.get(str(record.id))
        assert done.callback is not None
        assert (str(done.callback.state), done.callback.attempts) == ("delivered", 1)
    finally:
        await bus.close()


async def test_a_reply_is_journaled_before_it_is_acked(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer("birth-record")
    delivery = await bus.transport.get(Direction.RESPONSES, PORTAL)
    assert delivery is not None
    response_id = delivery.message.message_id
    at_ack: list[MessageState] = []
    ack = delivery._ack  # what the transport does on ack, watched

    async def watched_ack() -> None:
        at_ack.append((await bus.journal.get(response_id)).state)
        await ack()

    delivery._ack = watched_ack  # type: ignore[method-assign]
    assert await bus.replies(PORTAL).handle(delivery)
    assert at_ack == [MessageState.ACKED]
    request = await bus.journal.get(str(record.state.parts[0].message_id))
    assert request.state is MessageState.RESPONSE_DELIVERED
    assert (await bus.aggregator.get(str(record.id))).version == record.version + 1


class Watched:
    """The router as the intake sees it, telling what each ``take_reply`` was asked
    (a save or not) and answered (None: the copy was dropped)."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.takes: list[tuple[bool, ReplyOutcome | None]] = []
        #: How many responses each take that was not dropped took along.
        self.along: list[int] = []

    def read_reply(self, delivery: Delivery) -> PushedReply:
        return self.router.read_reply(delivery)

    async def take_reply(
        self,
        participant: str,
        delivery: Delivery,
        save: ReplySave | None,
        along: Sequence[Delivery] = (),
    ) -> ReplyTaken | None:
        taken = await self.router.take_reply(participant, delivery, save, along)
        self.takes.append((save is not None, None if taken is None else taken.outcome))
        if taken is not None:
            self.along.append(len(taken.along))
        return taken


def watched(bus: Bus) -> tuple[ReplyIntake, Watched]:
    inbox = Watched(bus.router)
    return ReplyIntake(bus.aggregator, inbox, bus.transport, PORTAL), inbox


async def test_a_copy_redelivered_after_the_write_is_dropped(bus: Bus) -> None:
    """The process dies between the journal's write and the transport's ack: the copy
    that comes back finds the reply taken, and changes nothing."""
    record = await submit(bus)
    await world_of(bus).answer("birth-record")
    delivery = await bus.transport.get(Direction.RESPONSES, PORTAL)
    assert delivery is not None

    async def dies() -> None:
        raise ConnectionError("the gateway died before the broker heard the ack")

    delivery.ack = dies  # type: ignore[method-assign]
    intake, inbox = watched(bus)
    with pytest.raises(ConnectionError):
        await intake.handle(delivery)
    await delivery.lapse()  # the broker's redelivery
    applied_once = await bus.aggregator.get(str(record.id))
    assert applied_once.version == record.version + 1

    assert await intake.drain() == 0
    # The first take never returned (its ack died). The copy, applied to what this
    # process last saw of the request, was dropped by the journal's write: no save.
    assert inbox.takes == [(True, None)]
    assert await bus.aggregator.get(str(record.id)) == applied_once
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    [response] = await bus.journal.responses_to(str(record.state.parts[0].message_id))
    assert response.state is MessageState.ACKED
    assert [t.to_state for t in await bus.journal.history(response.message_id)].count(
        MessageState.ACKED
    ) == 1


async def test_a_reply_applied_to_a_stale_request_is_applied_again(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer("birth-record")
    # Another aggregator process saves the request after this one last saw it.
    other = await bus.aggregator.store.save(
        on_rejection(record.state, "parent-inn", "NO_DATA", "none", bus.clock.now()).state,
        record.version,
        at=bus.clock.now(),
    )
    intake, inbox = watched(bus)

    assert await intake.drain() == 1

    assert inbox.takes == [(True, ReplyOutcome.CONFLICT), (True, ReplyOutcome.TAKEN)]
    done = await bus.aggregator.get(str(record.id))
    assert done.version == other.version + 1
    assert done.state.part("parent-inn").status is PartStatus.REJECTED  # the other's change
    assert done.state.part("birth-record").status is PartStatus.ANSWERED  # and the reply
    [response] = await bus.journal.responses_to(str(record.state.parts[0].message_id))
    assert response.state is MessageState.ACKED


async def test_a_late_reply_is_only_journaled(bus: Bus) -> None:
    record = await submit(bus)
    cancelled = await bus.aggregator.cancel(str(record.id), PORTAL)
    await world_of(bus).answer("birth-record")
    intake, inbox = watched(bus)

    assert await intake.drain() == 0

    assert inbox.takes == [(False, ReplyOutcome.TAKEN)]  # the journal's move, no save
    assert await bus.aggregator.get(str(record.id)) == cancelled
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    request = await bus.journal.get(str(record.state.parts[0].message_id))
    assert request.state is MessageState.RESPONSE_DELIVERED
    [response] = await bus.journal.responses_to(request.message_id)
    assert response.state is MessageState.ACKED


class Failing:
    """An aggregator whose store is down."""

    reply_gather = timedelta(0)

    async def apply_reply(
        self, original: uuid.UUID, response_data: etree._Element, take: TakeReply
    ) -> bool:
        raise OSError("database connection lost")


async def test_a_reply_that_cannot_be_stored_stays_in_its_queue(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer("birth-record")
    broken = ReplyIntake(Failing(), bus.router, bus.transport, PORTAL)
    with pytest.raises(OSError, match="connection lost"):
        await broken.drain()
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 1  # back, not acked
    assert (await bus.aggregator.get(str(record.id))).version == record.version

    assert await bus.replies(PORTAL).drain() == 1  # the store is back
    [response] = await bus.journal.responses_to(str(record.state.parts[0].message_id))
    assert response.state is MessageState.ACKED


async def test_replies_that_came_while_no_gateway_ran_are_taken_on_start(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer_all()  # nobody consumes PORTAL's replies yet
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 3
    finalized = asyncio.create_task(bus.aggregator.finalized.wait())
    await bus.root.serve_portal(PORTAL)  # the gateway (re)starts
    await asyncio.wait_for(finalized, timeout=WAIT)
    done = await bus.aggregator.get(str(record.id))
    assert done.status is ServiceState.COMPLETED


async def test_a_redundant_copy_is_settled_by_the_router(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer("birth-record")
    intake = bus.replies(PORTAL)
    assert await intake.drain() == 1
    applied = await bus.aggregator.get(str(record.id))
    [response] = await bus.journal.responses_to(str(record.state.parts[0].message_id))
    # The same response queued again (at-least-once publishing): acked, not applied.
    copy = Message(message_id=response.message_id, body=response.xml, headers={})
    await bus.transport.publish(Direction.RESPONSES, PORTAL, copy)
    assert await intake.drain() == 0
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    assert (await bus.aggregator.get(str(record.id))).version == applied.version
    assert (await bus.journal.get(response.message_id)).state is MessageState.ACKED


async def test_replies_waiting_for_their_turn_are_saved_together(bus: Bus) -> None:
    """A fan-out answered at once: the first reply is saved alone; the two that came
    while its write was out are applied in one turn and saved in the write of the
    first of them, the other journaled along in that write."""
    record = await submit(bus)
    await world_of(bus).answer_all()
    intake, inbox = watched(bus)
    finalized = asyncio.create_task(bus.aggregator.finalized.wait())

    assert await intake.drain() == 3

    assert inbox.takes == [
        (True, ReplyOutcome.TAKEN),
        (True, ReplyOutcome.TAKEN),  # carries the save of both, and the other reply
    ]
    assert inbox.along == [0, 1]
    await asyncio.wait_for(finalized, timeout=WAIT)
    done = await bus.aggregator.get(str(record.id))
    assert done.status is ServiceState.COMPLETED
    assert {p.status for p in done.state.parts} == {PartStatus.ANSWERED}
    assert done.version == record.version + 2
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    assert await journal_states(bus, done) == {
        (str(MessageKind.REQUEST), str(MessageState.RESPONSE_DELIVERED)),
        (str(MessageKind.RESPONSE), str(MessageState.ACKED)),
    }


async def first_taken(bus: Bus) -> tuple[ServiceRequestRecord, World, MessageRecord]:
    """A request whose first part's reply was taken already, and that reply."""
    record = await submit(bus)
    world = world_of(bus)
    await world.answer("birth-record")
    assert await bus.replies(PORTAL).drain() == 1
    [first] = await bus.journal.responses_to(str(record.state.parts[0].message_id))
    return record, world, first


async def queue_copy(bus: Bus, reply: MessageRecord) -> None:
    """``reply`` queued again (at-least-once publishing)."""
    copy = Message(message_id=reply.message_id, body=reply.xml, headers={})
    await bus.transport.publish(Direction.RESPONSES, PORTAL, copy)


async def acked_once(bus: Bus, reply: MessageRecord) -> bool:
    history = await bus.journal.history(reply.message_id)
    return [t.to_state for t in history].count(MessageState.ACKED) == 1


async def test_a_redundant_copy_in_a_turn_leaves_the_save_to_the_next_reply(bus: Bus) -> None:
    record, world, first = await first_taken(bus)
    # Queued: a new reply, a copy of the one taken (it waits behind the new one's write
    # and is first in the next turn), another new reply.
    await world.answer("parent-registration")
    await queue_copy(bus, first)
    await world.answer("parent-inn")
    intake, inbox = watched(bus)

    assert await intake.drain() == 2

    assert inbox.takes == [
        (True, ReplyOutcome.TAKEN),
        (True, None),  # the copy: dropped, nothing written
        (True, ReplyOutcome.TAKEN),  # so the last reply carries the save
    ]
    done = await bus.aggregator.get(str(record.id))
    assert done.status is ServiceState.COMPLETED
    assert done.version == record.version + 3
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    assert await acked_once(bus, first)


async def test_a_copy_in_a_turn_is_not_taken_along_but_dropped_on_its_own(bus: Bus) -> None:
    record, world, first = await first_taken(bus)
    # Queued: a new reply (saved alone), then another and a copy of the one taken, which
    # wait behind its write and make the next turn.
    await world.answer("parent-registration")
    await world.answer("parent-inn")
    await queue_copy(bus, first)
    intake, inbox = watched(bus)

    assert await intake.drain() == 2

    assert inbox.takes == [
        (True, ReplyOutcome.TAKEN),
        (True, ReplyOutcome.TAKEN),  # the copy along: not taken (ACKED already)
        (False, None),  # so it journals itself: dropped, nothing written
    ]
    assert inbox.along == [0, 0]
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    assert (await bus.aggregator.get(str(record.id))).status is ServiceState.COMPLETED
    assert await acked_once(bus, first)


async def test_a_failed_turn_leaves_every_reply_in_it_unsettled(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer_all()
    real = Watched(bus.router)
    writes = 0

    class FailsSecondWrite(Watched):
        async def take_reply(
            self,
            participant: str,
            delivery: Delivery,
            save: ReplySave | None,
            along: Sequence[Delivery] = (),
        ) -> ReplyTaken | None:
            nonlocal writes
            writes += 1
            if writes == 2:  # the turn of the two that waited
                raise OSError("database connection lost")
            return await real.take_reply(participant, delivery, save, along)

    broken = ReplyIntake(bus.aggregator, FailsSecondWrite(bus.router), bus.transport, PORTAL)
    with pytest.raises(OSError, match="connection lost"):
        await broken.drain()
    assert real.takes == [(True, ReplyOutcome.TAKEN)]
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 2  # both back, not acked
    assert (await bus.aggregator.get(str(record.id))).version == record.version + 1

    assert await bus.replies(PORTAL).drain() == 2  # the database is back
    done = await bus.aggregator.get(str(record.id))
    assert done.status is ServiceState.COMPLETED
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
