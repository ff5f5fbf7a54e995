"""The aggregator's replies arrive by push: a subscription on the portal's response queue.

Each reply is journaled DELIVERED, applied to its service request, journaled ACKED
(its request RESPONSE_DELIVERED) and only then acked on the transport; applying a
redelivered reply changes nothing; a reply that arrives while no subscription runs
waits in its queue for the next one.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from lxml import etree

from gateway.aggregator.replies import ReplyIntake
from gateway.config import Settings
from gateway.core.envelope import MessageKind
from gateway.core.lifecycle import MessageState
from gateway.core.service_lifecycle import ServiceState
from gateway.store.service_requests import ServiceRequestRecord
from gateway.testing.bus import Bus, open_bus
from gateway.transport.base import Direction, Message
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


async def test_a_redelivered_reply_changes_nothing(bus: Bus) -> None:
    record = await submit(bus)
    await world_of(bus).answer("birth-record")
    intake = bus.replies(PORTAL)
    # Applied, then the process dies before its journal write and ack: redelivered.
    delivery = await bus.transport.get(Direction.RESPONSES, PORTAL)
    assert delivery is not None
    reply = await bus.router.receive_response(PORTAL, delivery)
    assert reply is not None
    assert await bus.aggregator.apply_reply(reply.original_message_id, reply.response_data)
    applied_once = await bus.aggregator.get(str(record.id))
    await delivery.lapse()

    assert await intake.drain() == 0  # the second application changes nothing
    again = await bus.aggregator.get(str(record.id))
    assert again.version == applied_once.version
    assert await bus.depth(Direction.RESPONSES, PORTAL) == 0
    [response] = await bus.journal.responses_to(str(record.state.parts[0].message_id))
    assert response.state is MessageState.ACKED


class Failing:
    """An aggregator whose store is down."""

    async def apply_reply(self, original: uuid.UUID, response_data: etree._Element) -> bool:
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
