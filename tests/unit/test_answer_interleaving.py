"""A push provider's answer that outruns its request's QUEUED move, step by step.

The sender publishes, and leaves the QUEUED move for later (:mod:`gateway.router.marks`);
a provider consuming its queue by push can answer even before the broker's confirm
reaches the sender. Whatever the interleaving, the round trip ends in its true state:
the answer moves the request on from the state it is in at that moment (here
ACCEPTED), and the sender, coming second, leaves it so and tells its caller the state
it found. The interleaving is forced by the transport (the answer runs inside
``publish``), not by timing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from adapters.sdk.push import PushSource
from gateway.testing.bus import Bus, birth_request, birth_response
from gateway.testing.journal import Transition
from gateway.transport.base import Direction, Message

FOUND = 10.0


def after_publish(bus: Bus, direction: Direction, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` once, right after the next publish to ``direction``, before the
    publisher goes on (to journal QUEUED)."""
    publish = bus.transport.publish
    pending = [step]

    async def publish_then_step(to: Direction, participant: str, message: Message) -> None:
        await publish(to, participant, message)
        if to is direction and pending:
            await pending.pop()()

    bus.transport.publish = publish_then_step  # type: ignore[method-assign]


def states(history: tuple[Transition, ...]) -> list[str]:
    return [t.state for t in history]


async def test_an_answer_before_the_queued_move_ends_in_the_true_states(bus: Bus) -> None:
    push = PushSource(bus.transport, "ZAGS", bus.ctx.verifier, clock=bus.clock, wait=FOUND)

    reads: list[str] = []
    get = bus.journal.get

    async def counted(message_id: str) -> Any:
        reads.append(message_id)
        return await get(message_id)

    async def provider_answers() -> None:
        inbound = await push.next()
        assert inbound is not None
        report = await bus.report(inbound.delivery.metadata.message_id)
        assert report.status == "ACCEPTED"  # the sender has not journaled QUEUED yet
        bus.journal.get = counted  # type: ignore[method-assign]
        await bus.zags.send_response(inbound.delivery.reply_to, content=birth_response())
        bus.journal.get = get  # type: ignore[method-assign]
        await inbound.ack()

    try:
        after_publish(bus, Direction.REQUESTS, provider_answers)
        sent = await bus.portal.send_request(birth_request())

        assert sent.status == "responseIsAcceptedBySmev"  # the sender found it RESPONDED
        assert str(sent.message_id) not in reads  # answered on the request as accepted
        got = await bus.portal.get_response()
        assert got is not None
        await bus.portal.ack(got.metadata.message_id)
        report = await bus.report(sent.message_id)
        assert states(report.history) == [
            "ACCEPTED", "QUEUED", "DELIVERED", "RESPONDED", "RESPONSE_DELIVERED"
        ]  # fmt: skip
        answer = await bus.report(got.metadata.message_id)
        assert states(answer.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]
    finally:
        await push.close()


async def test_an_answer_to_a_request_this_process_queued_is_journaled_without_a_read(
    bus: Bus,
) -> None:
    push = PushSource(bus.transport, "ZAGS", bus.ctx.verifier, clock=bus.clock, wait=FOUND)
    reads: list[str] = []
    get = bus.journal.get

    async def counted(message_id: str) -> Any:
        reads.append(message_id)
        return await get(message_id)

    try:
        sent = await bus.portal.send_request(birth_request())
        inbound = await push.next()
        assert inbound is not None
        bus.journal.get = counted  # type: ignore[method-assign]
        await bus.zags.send_response(inbound.delivery.reply_to, content=birth_response())
        await inbound.ack()
        assert str(sent.message_id) not in reads  # the request as this process queued it
        bus.journal.get = get  # type: ignore[method-assign]
        report = await bus.report(sent.message_id)
        assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "RESPONDED"]
    finally:
        await push.close()


async def test_a_reply_consumed_before_its_queued_move_is_taken_without_a_read(
    bus: Bus,
) -> None:
    push = PushSource(bus.transport, "ZAGS", bus.ctx.verifier, clock=bus.clock, wait=FOUND)
    reads: list[str] = []
    get = bus.journal.get

    async def counted(message_id: str) -> Any:
        reads.append(message_id)
        return await get(message_id)

    async def portal_consumes() -> None:
        delivery = await bus.transport.get(Direction.RESPONSES, "PORTAL")
        assert delivery is not None
        bus.journal.get = counted  # type: ignore[method-assign]
        taken = await bus.router.take_reply("PORTAL", delivery, None)
        bus.journal.get = get  # type: ignore[method-assign]
        assert taken is not None

    try:
        await bus.portal.send_request(birth_request())
        inbound = await push.next()
        assert inbound is not None
        after_publish(bus, Direction.RESPONSES, portal_consumes)
        answer = await bus.zags.send_response(inbound.delivery.reply_to, content=birth_response())
        await inbound.ack()
        assert reads == []  # taken from ACCEPTED in its one write
        report = await bus.report(answer.message_id)
        assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]
    finally:
        await push.close()
