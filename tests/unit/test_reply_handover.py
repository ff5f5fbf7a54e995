"""A reply to a portal whose replies this process consumes is handed over in process,
not published to the broker and pushed back (:mod:`gateway.router.handover`); whatever
the take leaves unsettled goes to the portal's queue, where the subscription takes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from gateway.config import Settings
from gateway.core.lifecycle import MessageState
from gateway.core.service_lifecycle import ServiceState
from gateway.router.handover import HANDED_OVER
from gateway.store.service_requests import ServiceRequestRecord
from gateway.testing.bus import Bus, open_bus
from gateway.transport.base import Delivery, Direction, Message, QueueCounts
from tests.unit.test_aggregator_service import AGENCIES, APPLICANT, SERVICE
from tests.unit.test_reply_intake import PORTAL, WAIT, posting_bus, submit, world_of

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def serving() -> AsyncIterator[tuple[Bus, list[tuple[Direction, str]]]]:
    """A bus consuming ``PORTAL``'s replies (a day between its loops' rounds), and every
    ``(direction, queue)`` published to."""
    settings = Settings(api_tokens={"portal-token": PORTAL}, aggregator_interval_s=86400)
    bus = await open_bus(settings=settings, background=True)
    published: list[tuple[Direction, str]] = []
    publish = bus.transport.publish

    async def watched(direction: Direction, participant: str, message: Message) -> None:
        published.append((direction, participant))
        await publish(direction, participant, message)

    bus.transport.publish = watched  # type: ignore[method-assign]
    try:
        yield bus, published
    finally:
        await bus.close()


async def answered(
    bus: Bus, record: ServiceRequestRecord, *, together: bool = False
) -> ServiceRequestRecord:
    """``record`` once every agency answered (one after another, or at once) and the
    replies were taken."""
    finalized = asyncio.create_task(bus.aggregator.finalized.wait())
    world = world_of(bus)
    await (world.answer_together() if together else world.answer_all())
    await asyncio.wait_for(finalized, timeout=WAIT)
    return await bus.aggregator.get(str(record.id))


async def response_moves(bus: Bus, record: ServiceRequestRecord) -> list[list[Any]]:
    """Each part's response: its journal moves as ``(to_state, reason)``."""
    moves = []
    for part in record.state.parts:
        [response] = await bus.journal.responses_to(str(part.message_id))
        history = await bus.journal.history(response.message_id)
        moves.append([(str(t.to_state), t.reason) for t in history])
    return moves


async def test_replies_to_a_portal_served_here_skip_the_broker(
    serving: tuple[Bus, list[tuple[Direction, str]]],
) -> None:
    bus, published = serving
    assert bus.aggregator.reply_gather == timedelta(milliseconds=20)  # the setting's default
    # A minute to gather in: the last reply finishes the request, nobody waits it out.
    bus.aggregator.reply_gather = timedelta(minutes=1)
    done = await answered(bus, await submit(bus), together=True)
    await bus.root.supervisor.close()  # waits for the takes under way
    assert done.status is ServiceState.COMPLETED
    assert done.version == 2  # created, then the three replies saved in one write
    assert (Direction.RESPONSES, PORTAL) not in published
    assert published.count((Direction.REQUESTS, "ZAGS")) == 1  # requests still go by broker
    for moves in await response_moves(bus, done):
        assert moves == [
            (str(MessageState.ACCEPTED), None),
            (str(MessageState.QUEUED), HANDED_OVER),
            (str(MessageState.DELIVERED), "attempt 1"),
            (str(MessageState.ACKED), None),
        ]


async def test_a_handed_over_reply_whose_take_fails_goes_to_the_queue_and_is_taken_there(
    serving: tuple[Bus, list[tuple[Direction, str]]],
) -> None:
    bus, published = serving
    bus.aggregator.reply_gather = timedelta(0)  # each reply in its own turn
    take_reply = bus.journal.take_reply
    failures = 0

    async def failing_once(*args: Any, **kw: Any) -> Any:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("database connection lost")
        return await take_reply(*args, **kw)

    bus.journal.take_reply = failing_once  # type: ignore[method-assign]
    done = await answered(bus, await submit(bus))
    assert done.status is ServiceState.COMPLETED
    assert failures == 1
    # The one reply whose take failed went by the broker; the others were handed over.
    assert published.count((Direction.RESPONSES, PORTAL)) == 1
    await bus.root.supervisor.close()
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    # The failed take wrote nothing: that response was journaled as taken from the queue.
    queued = sorted(moves[1] for moves in await response_moves(bus, done))
    assert queued == [
        (str(MessageState.QUEUED), HANDED_OVER),
        (str(MessageState.QUEUED), HANDED_OVER),
        (str(MessageState.QUEUED), f"seen in responses.{PORTAL}"),
    ]


async def test_once_the_subscription_ends_replies_go_to_the_queue_again(
    serving: tuple[Bus, list[tuple[Direction, str]]],
) -> None:
    bus, published = serving
    record = await submit(bus)
    await bus.root.supervisor.close()  # the gateway stops consuming PORTAL's replies
    await world_of(bus).answer_all()
    assert published.count((Direction.RESPONSES, PORTAL)) == 3
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 3
    assert (await bus.aggregator.get(str(record.id))).status is not ServiceState.COMPLETED


async def test_each_agency_of_a_gathering_turn_is_answered_once_its_write_is_under_way(
    serving: tuple[Bus, list[tuple[Direction, str]]],
) -> None:
    bus, _ = serving
    bus.aggregator.reply_gather = timedelta(minutes=1)  # the first two replies wait in it
    take_reply = bus.journal.take_reply
    events: list[str] = []

    async def watched(message_id: str, save: Any, **kw: Any) -> Any:
        if save is not None:
            events.append("write")
        return await take_reply(message_id, save, **kw)

    bus.journal.take_reply = watched  # type: ignore[method-assign]
    await submit(bus)
    world = world_of(bus)

    async def answer(part: str) -> None:
        await world.answer(part)
        events.append(part)

    await asyncio.gather(*(answer(part) for part in AGENCIES))
    # The write that saves all three was under way before the bus answered any of
    # their SendResponses (the first two were held for it: gateway.router.holds).
    assert events[0] == "write"
    assert sorted(events[1:]) == sorted(AGENCIES)


async def test_the_answers_of_replies_that_waited_go_once_the_result_callback_was_posted() -> None:
    events: list[str] = []
    bus = await posting_bus(lambda url, headers: events.append("callback"))
    bus.aggregator.reply_gather = timedelta(minutes=1)  # the first two replies wait in it
    world = world_of(bus)

    async def answer(part: str) -> None:
        await world.answer(part)
        events.append(part)

    try:
        await bus.aggregator.submit(
            service=SERVICE,
            applicant=APPLICANT,
            participant=PORTAL,
            callback_url="https://portal.example/done",
        )
        # Not the window: a held answer that nothing lets go would fail this.
        await asyncio.wait_for(asyncio.gather(*(answer(part) for part in AGENCIES)), WAIT)
    finally:
        await bus.close()
    # The reply that came last may have its answer first (as its write begins); the
    # two that waited for it, once the request's result was posted.
    assert sorted(events) == sorted(["callback", *AGENCIES])
    assert events.index("callback") <= 1


async def test_replies_gather_only_while_no_other_process_consumes_them(
    serving: tuple[Bus, list[tuple[Direction, str]]],
) -> None:
    bus, _ = serving
    window = timedelta(milliseconds=Settings().aggregator_gather_ms)
    assert bus.aggregator.reply_gather == window  # this process alone consumes PORTAL's

    async def elsewhere(delivery: Delivery) -> None:
        await delivery.lapse()

    # Another process (a second worker) consumes PORTAL's replies too: it takes its
    # share of a request's replies, which a turn here would wait for in vain.
    other = await bus.transport.consume(Direction.RESPONSES, PORTAL, elsewhere)
    await bus.root.gather_if_alone()
    assert bus.aggregator.reply_gather == timedelta(0)
    done = await answered(bus, await submit(bus))
    assert done.version == 4  # created, then each reply saved in its own turn

    counts = bus.transport.counts

    async def broker_down(direction: Direction, participant: str) -> QueueCounts:
        raise ConnectionError("broker unreachable")

    bus.transport.counts = broker_down  # type: ignore[method-assign]
    await other.cancel()
    await bus.root.gather_if_alone()
    assert bus.aggregator.reply_gather == timedelta(0)  # not known: left as it was
    bus.transport.counts = counts  # type: ignore[method-assign]
    await bus.root.gather_if_alone()
    assert bus.aggregator.reply_gather == window
