"""LocalParticipant: the aggregator's in-process consumer gives what ``/ws`` gives.

The provider (a real ParticipantClient over SOAP) must not be able to tell a request
submitted in process from one that came over HTTP: it verifies the portal's signature
on it, and the journal records the same lifecycle.
"""

from __future__ import annotations

import pytest
from lxml import etree

from gateway.core.errors import AccessDenied, NotFound
from gateway.router.local import LocalParticipant
from gateway.testing.bus import BIRTH, Bus, birth_request, birth_response, content
from gateway.transport.base import Direction
from gateway.xml.readers import read_request_data, read_response_data


def local(bus: Bus, mnemonic: str = "PORTAL") -> LocalParticipant:
    return LocalParticipant(
        bus.router, bus.registry.get(mnemonic), bus.pki.signer(mnemonic), bus.ctx.ids
    )


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


async def test_round_trip_through_a_remote_provider(bus: Bus) -> None:
    portal = local(bus)
    asked = birth_request()
    sent = await portal.send_request(asked)
    assert (sent.sender.mnemonic, sent.message_type, sent.status) == (
        "PORTAL",
        BIRTH,
        "requestIsAcceptedBySmev",
    )

    # ZAGS's client verifies the bus signature and the portal's signature on the request.
    delivery = await bus.zags.get_request()
    assert delivery is not None
    assert delivery.metadata.message_id == sent.message_id
    assert c14n(read_request_data(delivery.request_data).content) == c14n(asked)
    answer = birth_response()
    responded = await bus.zags.send_response(delivery.reply_to, content=answer)
    await bus.zags.ack(delivery.metadata.message_id)

    got = await portal.get_response()
    assert got is not None
    assert got.original_message_id == sent.message_id
    assert got.metadata.message_id == responded.message_id
    data = read_response_data(got.response_data)
    assert data.content is not None
    assert c14n(data.content) == c14n(answer)
    assert await portal.get_response() is None  # held for its Ack, not handed out twice
    await portal.ack(got.metadata.message_id)

    history = await bus.journal.history(str(sent.message_id))
    assert [str(t.to_state) for t in history] == [
        "ACCEPTED",
        "QUEUED",
        "DELIVERED",
        "RESPONDED",
        "RESPONSE_DELIVERED",
    ]
    assert await bus.depths() == dict.fromkeys(await bus.depths(), 0)


async def test_same_rules_as_over_soap(bus: Bus) -> None:
    # MVD_MIGR may not ask ZAGS for a birth record over SOAP; nor in process.
    with pytest.raises(AccessDenied):
        await local(bus, "MVD_MIGR").send_request(birth_request())
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0


async def test_a_prepared_request_is_checked_at_once_and_sent_only_when_awaited(
    bus: Bus,
) -> None:
    # The router's refusal comes from prepare_request itself...
    with pytest.raises(AccessDenied):
        local(bus, "MVD_MIGR").prepare_request(birth_request())
    # ... and what it accepts is neither journaled nor queued until the send is awaited.
    portal = local(bus)
    send = portal.prepare_request(birth_request())
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
    assert (await bus.journal.find()).items == ()
    sent = await send()
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
    assert [str(t.to_state) for t in await bus.journal.history(str(sent.message_id))] == [
        "ACCEPTED"
    ]


async def test_ack_of_a_message_not_held_is_not_found(bus: Bus) -> None:
    portal = local(bus)
    sent = await portal.send_request(content("mvd-passport-validity.request"))
    with pytest.raises(NotFound):
        await portal.ack(sent.message_id)
