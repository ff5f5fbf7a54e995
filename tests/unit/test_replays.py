"""A captured signed pull, posted again within its Timestamp window, is refused.

Replays are made of the exact bytes, of a re-serialization (another SOAP prefix, no
XML declaration, the SignatureValue's base64 wrapped), and of an ECDSA signature
turned into another valid one; each is refused with ``replayed_request`` and takes
nothing from the queue.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from lxml import etree

from gateway.core.lifecycle import MessageState
from gateway.crypto.profiles import DS_NS
from gateway.testing.bus import Bus, birth_request, birth_response, signed, soap
from gateway.transport.base import Direction
from gateway.xml import messages as m
from gateway.xml.soap import find_signature

#: The order of the P-256 group: an ECDSA signature (r, s) verifies as (r, N - s) too.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def get_request(bus: Bus, who: str, at: datetime | None = None) -> bytes:
    """A GetRequest signed by ``who``, as a captured copy of it on the wire."""
    selector = m.TypeSelector(timestamp=at or bus.clock.now())
    return soap(signed(m.build_get_request(selector), bus.pki.signer(who)))


def handed_out(reply_root: etree._Element) -> str | None:
    """The MessageID a GetRequest/GetResponse reply hands out, or None."""
    return reply_root.findtext(".//{*}MessageMetadata/{*}MessageId")


async def two_requests_for_zags(bus: Bus) -> tuple[str, str]:
    first = await bus.portal.send_request(birth_request())
    second = await bus.portal.send_request(birth_request())
    return str(first.message_id), str(second.message_id)


async def test_a_get_request_posted_again_is_refused_and_hands_out_nothing(bus: Bus) -> None:
    first, second = await two_requests_for_zags(bus)
    captured = get_request(bus, "ZAGS")
    served = await bus.send(captured)
    assert served.ok, served.description
    assert handed_out(served.root) == first

    replay = await bus.send(captured)
    assert (replay.status, replay.code) == (500, "replayed_request")
    assert replay.description is not None
    assert "already received" in replay.description
    assert "sign a new one with a fresh Timestamp" in replay.description
    assert replay.root.findtext(".//faultcode") == "soap:Client.replayed_request"
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
    assert await bus.journal_queued_marks() == 1  # the second's: the first was handed out
    assert (await bus.journal.get(second)).state is MessageState.QUEUED

    bus.clock.advance(timedelta(milliseconds=1))
    fresh = await bus.zags.get_request()  # a fresh Timestamp, signed anew: served
    assert fresh is not None
    assert str(fresh.metadata.message_id) == second


def reserialized(raw: bytes) -> bytes:
    """The same signed request written differently: what a SignatureValue-text key or a
    byte digest would not recognize."""
    root = etree.fromstring(raw)
    signature = find_signature(root[1][0])
    assert signature is not None
    value = signature.find(f"{{{DS_NS}}}SignatureValue")
    assert value is not None
    assert value.text is not None
    value.text = "\n".join(value.text[i : i + 16] for i in range(0, len(value.text), 16))
    text = etree.tostring(root).decode()
    return text.replace("soap:", "env:").replace("xmlns:soap=", "xmlns:env=").encode()


def malleated(raw: bytes) -> bytes:
    """The same request with its ECDSA signature (r, s) replaced by (r, n - s)."""
    root = etree.fromstring(raw)
    signature = find_signature(root[1][0])
    assert signature is not None
    value = signature.find(f"{{{DS_NS}}}SignatureValue")
    assert value is not None
    assert value.text is not None
    rs = base64.b64decode(value.text)
    s = int.from_bytes(rs[32:])
    value.text = base64.b64encode(rs[:32] + (P256_ORDER - s).to_bytes(32)).decode()
    return etree.tostring(root)


@pytest.mark.parametrize("rewrite", [reserialized, malleated], ids=["reserialized", "malleated"])
async def test_a_rewritten_copy_of_a_served_get_request_is_refused(
    bus: Bus, rewrite: Callable[[bytes], bytes]
) -> None:
    await two_requests_for_zags(bus)
    captured = get_request(bus, "ZAGS")
    assert (await bus.send(captured)).ok
    copy = rewrite(captured)
    assert copy != captured

    replay = await bus.send(copy)
    assert replay.code == "replayed_request", replay.description
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1


async def test_a_rewritten_copy_is_a_valid_request_when_not_replayed(bus: Bus) -> None:
    # Each rewrite still verifies: posted first, it is served, so the guard (not the
    # signature check) is what refuses it above.
    first, second = await two_requests_for_zags(bus)
    for rewrite, expected in ((reserialized, first), (malleated, second)):
        reply = await bus.send(rewrite(get_request(bus, "ZAGS")))
        assert reply.ok, reply.description
        assert handed_out(reply.root) == expected
        bus.clock.advance(timedelta(microseconds=1))


async def test_a_get_response_posted_again_is_refused(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    selector = m.TypeSelector(timestamp=bus.clock.now())
    captured = soap(signed(m.build_get_response(selector), bus.pki.signer("PORTAL")))
    served = await bus.send(captured)
    assert served.ok
    assert handed_out(served.root) is not None

    replay = await bus.send(captured)
    assert replay.code == "replayed_request"
    assert str(sent.message_id) not in (replay.description or "")


async def test_equal_pulls_of_two_participants_are_not_each_others_replays(bus: Bus) -> None:
    at = bus.clock.now()
    for who in ("ZAGS", "MVD_MIGR"):  # same selector, same Timestamp, other signer
        reply = await bus.send(get_request(bus, who, at))
        assert reply.ok, reply.description


async def test_outside_its_window_a_replay_is_stale_not_remembered(bus: Bus) -> None:
    captured = get_request(bus, "ZAGS")
    assert (await bus.send(captured)).ok
    bus.clock.advance(timedelta(minutes=6))  # past the 5-minute clock skew
    replay = await bus.send(captured)
    assert replay.code == "stale_message_id"


async def test_a_client_never_signs_two_pulls_alike(bus: Bus) -> None:
    # The clock stands still (a FakeClock), yet each pull gets its own Timestamp.
    for _ in range(3):
        assert await bus.zags.get_request() is None
        assert await bus.portal.get_response() is None
