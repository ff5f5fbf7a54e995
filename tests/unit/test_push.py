"""Push mode: :class:`PushSource` over the memory transport, and the router's journal.

A request consumed straight from ``requests.<provider>`` (never pulled) is journaled
QUEUED until its answer arrives; then DELIVERED ("delivered by push"), RESPONDED.
Deliveries that fail verification are dead-lettered with the reason; deliveries the
runner leaves unsettled go back to the queue. Waits are bounded; no wall-clock checks.
"""

from __future__ import annotations

from lxml import etree

from adapters.sdk.push import PushSource
from gateway.testing.bus import (
    BIRTH,
    Bus,
    birth_request,
    birth_response,
    send_request_body,
    uuid1_at,
)
from gateway.testing.bus import START as T0
from gateway.testing.journal import Transition
from gateway.transport.base import DeadLetterReason, Direction, Message
from gateway.xml.readers import read_request_data

#: How long ``next`` may wait for a delivery that is expected (bounded, generous).
FOUND = 10.0
#: How long ``next`` waits when nothing should come.
NOTHING = 0.05


def source(bus: Bus, participant: str = "ZAGS", **kwargs: float) -> PushSource:
    return PushSource(bus.transport, participant, bus.verifier, clock=bus.clock, **kwargs)


def states(history: tuple[Transition, ...]) -> list[str]:
    return [t.state for t in history]


async def publish_raw(bus: Bus, body: etree._Element, sender: str = "PORTAL") -> str:
    message_id = str(uuid1_at(T0))
    await bus.transport.publish(
        Direction.REQUESTS,
        "ZAGS",
        Message(
            message_id=message_id,
            body=etree.tostring(body),
            headers={"sender": sender, "message-type": BIRTH, "kind": "REQUEST"},
        ),
    )
    return message_id


async def test_pushed_request_is_answered_and_journaled_delivered_by_push(bus: Bus) -> None:
    push = source(bus, wait=FOUND)
    try:
        sent = await bus.portal.send_request(birth_request())
        inbound = await push.next()
        assert inbound is not None
        delivery = inbound.delivery
        assert delivery.metadata.message_id == sent.message_id
        assert delivery.metadata.sender.mnemonic == "PORTAL"
        assert delivery.metadata.message_type == BIRTH
        assert delivery.reply_to == str(sent.message_id)
        assert read_request_data(delivery.request_data).message_id == sent.message_id

        before = await bus.report(sent.message_id)
        assert before.status == "ACCEPTED"  # its QUEUED mark waits (gateway.router.marks)
        await bus.zags.send_response(delivery.reply_to, content=birth_response())
        await inbound.ack()

        report = await bus.report(sent.message_id)
        assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "RESPONDED"]
        assert report.history[1].reason == "answered before journaled queued"
        assert report.history[2].reason == "delivered by push"
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
        assert await bus.transport.dead_letters(Direction.REQUESTS, "ZAGS") == []
        push.wait = NOTHING
        assert await push.next() is None  # a settled request does not come back
        got = await bus.portal.get_response()
        assert got is not None
        assert got.original_message_id == sent.message_id
    finally:
        await push.close()


async def test_response_to_a_pulled_request_keeps_the_pull_history(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    await bus.zags.ack(delivery.metadata.message_id)
    report = await bus.report(sent.message_id)
    assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "RESPONDED"]
    assert report.history[2].reason == "attempt 1"


async def test_tampered_request_is_dead_lettered_with_the_reason(bus: Bus) -> None:
    body = send_request_body(bus.pki.signer("PORTAL"))
    data = body.find(".//{*}MessagePrimaryContent")
    assert data is not None
    leaf = next(el for el in data.iter() if el.text and el.text.strip())
    leaf.text = (leaf.text or "") + "X"  # after signing
    message_id = await publish_raw(bus, body)
    push = source(bus, wait=NOTHING)
    try:
        letters = []
        for _ in range(200):  # bounded: the transport hands it over within a few polls
            assert await push.next() is None
            letters = await bus.transport.dead_letters(Direction.REQUESTS, "ZAGS")
            if letters:
                break
        assert [d.message.message_id for d in letters] == [message_id]
        assert letters[0].reason is DeadLetterReason.REJECTED
        assert "signature" in letters[0].detail
    finally:
        await push.close()


async def test_request_signed_by_another_than_its_sender_is_dead_lettered(bus: Bus) -> None:
    body = send_request_body(bus.pki.signer("FNS"))
    message_id = await publish_raw(bus, body, sender="PORTAL")
    push = source(bus, wait=NOTHING)
    try:
        letters = []
        for _ in range(200):
            assert await push.next() is None
            letters = await bus.transport.dead_letters(Direction.REQUESTS, "ZAGS")
            if letters:
                break
        assert [d.message.message_id for d in letters] == [message_id]
        assert "not by the sender 'PORTAL'" in letters[0].detail
    finally:
        await push.close()


async def test_unsettled_delivery_goes_back_to_the_queue(bus: Bus) -> None:
    push = source(bus, wait=FOUND, requeue_delay=0.0)
    try:
        sent = await bus.portal.send_request(birth_request())
        first = await push.next()
        assert first is not None
        first_held = first.held
        # The runner leaves it unsettled (SendResponse failed); asking for the next one
        # gives it back, and it is delivered again (counting towards the delivery limit).
        again = await push.next()
        assert again is not None
        assert again.delivery.metadata.message_id == sent.message_id
        assert first_held.settled
        assert again.held.delivery_count == 2
        await again.ack()
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
    finally:
        await push.close()


async def test_close_gives_unacked_deliveries_back(bus: Bus) -> None:
    push = source(bus, wait=FOUND)
    sent = await bus.portal.send_request(birth_request())
    inbound = await push.next()
    assert inbound is not None
    await push.close()
    assert inbound.held.settled
    assert await push.next() is None
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
    delivery = await bus.zags.get_request()  # and a pull finds it
    assert delivery is not None
    assert delivery.metadata.message_id == sent.message_id
