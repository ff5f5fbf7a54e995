"""The outbox relay: what the journal accepted is published even if its publisher died.

A process killed between journaling a message ACCEPTED and the broker's confirm
leaves it unpublished. These tests stand in for the kill with a publish that fails
once, and a sender that never sends again (as a provider whose SendResponse got no
answer does not: its request comes back instead).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from gateway.core.errors import InternalError
from gateway.core.lifecycle import MessageState
from gateway.router.outbox import Relay
from gateway.testing.bus import (
    START,
    Bus,
    birth_request,
    birth_response,
    send_request_body,
    soap,
    uuid1_at,
)
from gateway.transport.base import Direction, Message
from gateway.transport.errors import PublishRefused

AFTER = timedelta(seconds=10)

Publish = Callable[[Direction, str, Message], Awaitable[None]]


def relay(bus: Bus) -> Relay:
    return bus.router.relay(AFTER)


def die_at_next_publish(bus: Bus, *, published: bool = False) -> None:
    """The next publish dies like a killed process: before the broker has the message,
    or (``published``) after it has it and before anything is journaled."""
    publish: Publish = bus.transport.publish

    async def dying(direction: Direction, participant: str, message: Message) -> None:
        bus.transport.publish = publish  # type: ignore[method-assign]
        if published:
            await publish(direction, participant, message)
        raise PublishRefused("the process died here")

    bus.transport.publish = dying  # type: ignore[method-assign]


async def states(bus: Bus, message_id: str | uuid.UUID) -> list[str]:
    return [str(t.state) for t in (await bus.report(message_id)).history]


async def test_a_request_left_accepted_is_published_once_it_is_overdue(bus: Bus) -> None:
    message_id = str(uuid1_at(START))
    raw = soap(send_request_body(bus.pki.signer("PORTAL"), message_id=uuid.UUID(message_id)))
    die_at_next_publish(bus)
    assert (await bus.send(raw)).code == "internal"

    assert await relay(bus).sweep() == 0  # it may still be on its way
    assert (await bus.journal.get(message_id)).state is MessageState.ACCEPTED

    bus.clock.advance(AFTER + timedelta(seconds=1))
    assert await relay(bus).sweep() == 1
    assert await states(bus, message_id) == ["ACCEPTED", "QUEUED"]
    delivery = await bus.zags.get_request()
    assert delivery is not None
    assert str(delivery.metadata.message_id) == message_id
    await bus.zags.ack(delivery.metadata.message_id)
    assert await relay(bus).sweep() == 0
    assert await bus.zags.get_request() is None


async def test_an_answer_whose_provider_never_resends_it_still_reaches_the_consumer(
    bus: Bus,
) -> None:
    """The loss the relay closes: SendResponse journaled the answer (its request
    RESPONDED), the process died before publishing it, and the provider, which got no
    reply, left its request unacknowledged. The request comes back, is dropped as
    answered, and nothing else would ever publish the answer."""
    request_id = uuid1_at(START)
    await bus.portal.send_request(birth_request(), message_id=request_id)
    delivery = await bus.zags.get_request()
    assert delivery is not None
    die_at_next_publish(bus)
    with pytest.raises(InternalError):
        await bus.zags.send_response(delivery.reply_to, content=birth_response())
    assert (await bus.journal.get(str(request_id))).state is MessageState.RESPONDED

    bus.clock.advance(timedelta(seconds=61))  # past the visibility timeout
    assert await bus.zags.get_request() is None  # the copy came back, dropped: answered
    assert await bus.portal.get_response() is None  # the answer is not queued

    assert await relay(bus).sweep() == 1
    answer = await bus.portal.get_response()
    assert answer is not None
    assert answer.original_message_id == request_id
    await bus.portal.ack(answer.metadata.message_id)
    assert await states(bus, answer.metadata.message_id) == [
        "ACCEPTED",
        "QUEUED",
        "DELIVERED",
        "ACKED",
    ]


async def test_a_message_published_twice_is_delivered_once(bus: Bus) -> None:
    """Died after the broker had it, before journaling QUEUED: the relay publishes a
    second copy, and the consumer drops the redundant one."""
    message_id = uuid1_at(START)
    die_at_next_publish(bus, published=True)
    with pytest.raises(InternalError):
        await bus.portal.send_request(birth_request(), message_id=message_id)
    bus.clock.advance(AFTER + timedelta(seconds=1))
    assert await relay(bus).sweep() == 1
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 2

    delivery = await bus.zags.get_request()
    assert delivery is not None
    assert delivery.metadata.message_id == message_id
    await bus.zags.ack(delivery.metadata.message_id)
    assert await bus.zags.get_request() is None
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
    assert await states(bus, message_id) == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]
