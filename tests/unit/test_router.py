"""The six message-exchange operations through ``Router.handle``, driven by ParticipantClient.

Every call is a signed SOAP exchange as bytes (the same path the HTTP endpoint takes);
transport in memory, journal in in-memory SQLite, one FakeClock for everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from cryptography import x509
from lxml import etree

from gateway.client.participant import ParticipantClient
from gateway.core.errors import (
    AccessDenied,
    MessageAlreadySent,
    NotFound,
    SchemaViolation,
    SignatureInvalid,
)
from gateway.core.lifecycle import MessageState
from gateway.crypto.certificates import common_name, fingerprint
from gateway.crypto.envelope import verify_element
from gateway.router.router import Router
from gateway.store import open_journal
from gateway.store.records import Answered, MessageRecord, NewMessage
from gateway.testing.bus import (
    BIRTH,
    BUS,
    PASSPORT,
    START,
    Bus,
    birth_request,
    birth_response,
    content,
    open_bus,
    send_request_body,
    signed,
    soap,
    uuid1_at,
)
from gateway.testing.journal import Transition
from gateway.transport.base import Direction, Message
from gateway.transport.errors import PublishRefused
from gateway.transport.topology import QueuePolicy
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_TYPES, qname
from gateway.xml.readers import read_request_data, read_response_data
from gateway.xml.soap import find_signature, signature_target, unwrap_envelope


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


def last_reply_body(bus: Bus) -> etree._Element:
    """The Body element of the last successful reply the router gave."""
    status, raw = bus.exchanges[-1][1]
    assert status == 200
    root = etree.fromstring(raw)
    return unwrap_envelope(root)[1]


def bus_certificate(bus: Bus) -> x509.Certificate:
    return x509.load_pem_x509_certificate(bus.pki.cert_pem(BUS))


def states(history: tuple[Transition, ...]) -> list[str]:
    return [t.state for t in history]


async def test_round_trip_request_response_and_lifecycle(bus: Bus) -> None:
    asked = birth_request()
    sent = await bus.portal.send_request(asked)
    assert sent.sender.mnemonic == "PORTAL"
    assert sent.recipient is not None
    assert sent.recipient.mnemonic == "ZAGS"
    assert sent.message_type == BIRTH
    assert sent.status == "requestIsAcceptedBySmev"  # the journal's QUEUED, in 1.1 terms
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1

    # ZAGS pulls it: the client has checked the bus signature and the portal's.
    delivery = await bus.zags.get_request()
    assert delivery is not None
    assert delivery.metadata.message_id == sent.message_id
    assert delivery.metadata.sender.mnemonic == "PORTAL"
    assert delivery.reply_to == str(sent.message_id)
    request = read_request_data(delivery.request_data)
    assert c14n(request.content) == c14n(asked)
    # And who signed what, checked independently of the client.
    reply = last_reply_body(bus)
    assert fingerprint(bus.verifier.verify(*_smev_signed(reply))) == fingerprint(
        bus_certificate(bus)
    )
    inner = reply.find(f"{{{SMEV_TYPES}}}RequestMessage/{{{SMEV_TYPES}}}Request")
    assert inner is not None
    author = verify_element(inner, bus.verifier, "SenderInformationSystemSignature")
    assert common_name(author) == "PORTAL"

    answer = birth_response()
    responded = await bus.zags.send_response(delivery.reply_to, content=answer)
    assert responded.sender.mnemonic == "ZAGS"
    assert responded.recipient is not None
    assert responded.recipient.mnemonic == "PORTAL"
    await bus.zags.ack(delivery.metadata.message_id)
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
    assert await bus.depth(Direction.RESPONSES, "PORTAL") == 1

    got = await bus.portal.get_response()
    assert got is not None
    assert got.original_message_id == sent.message_id
    assert got.metadata.message_id == responded.message_id
    assert got.metadata.sender.mnemonic == "ZAGS"
    data = read_response_data(got.response_data)
    assert data.to == str(sent.message_id)
    assert data.content is not None
    assert c14n(data.content) == c14n(answer)
    reply = last_reply_body(bus)
    inner = reply.find(f"{{{SMEV_TYPES}}}ResponseMessage/{{{SMEV_TYPES}}}Response")
    assert inner is not None
    author = verify_element(inner, bus.verifier, "SenderInformationSystemSignature")
    assert common_name(author) == "ZAGS"
    await bus.portal.ack(got.metadata.message_id)

    report = await bus.report(sent.message_id)
    assert report.status == "RESPONSE_DELIVERED"
    assert states(report.history) == [
        "ACCEPTED",
        "QUEUED",
        "DELIVERED",
        "RESPONDED",
        "RESPONSE_DELIVERED",
    ]
    # The provider may ask about the request it received, and about its own response.
    assert (await bus.report(sent.message_id)).status == "RESPONSE_DELIVERED"
    response_report = await bus.report(responded.message_id)
    assert states(response_report.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]
    assert await bus.depths() == dict.fromkeys(await bus.depths(), 0)


def _bus_signed(reply: etree._Element) -> etree._Element:
    """The element holding the bus's SMEVSignature: the reply, or (1.1) the
    RequestMessage / ResponseMessage inside it."""
    for name in ("RequestMessage", "ResponseMessage"):
        found = reply.find(f"{{{SMEV_TYPES}}}{name}")
        if found is not None:
            return found
    return reply


def _smev_signed(reply: etree._Element) -> tuple[etree._Element, etree._Element]:
    """(signed element, ds:Signature) of the bus's SMEVSignature on a reply."""
    holder = _bus_signed(reply)
    signature = find_signature(holder, "SMEVSignature")
    assert signature is not None
    return signature_target(holder), signature


async def test_empty_queues_give_none(bus: Bus) -> None:
    assert await bus.zags.get_request() is None
    assert await bus.portal.get_response() is None
    assert await bus.client("FNS").get_request(namespace="urn://smevbus/types/fns/inn/1.0") is None


async def test_identical_resubmission_is_acknowledged_once_queued(bus: Bus) -> None:
    raw = soap(send_request_body(bus.pki.signer("PORTAL")))
    first = await bus.send(raw)
    second = await bus.send(raw)
    assert first.ok, first.description
    assert second.ok, second.description
    ids = [
        r.root.findtext(f".//{{{SMEV_TYPES}}}MessageMetadata/{{{SMEV_TYPES}}}MessageId")
        for r in (first, second)
    ]
    assert ids[0] is not None
    assert ids[0] == ids[1]
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1

    # Still a no-op after the provider pulled it: nothing is queued a second time.
    delivery = await bus.zags.get_request()
    assert delivery is not None
    third = await bus.send(raw)
    assert third.ok, third.description
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
    report = await bus.report(uuid.UUID(ids[0]))
    assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED"]


async def test_a_publish_the_broker_refused_goes_through_when_resent(bus: Bus) -> None:
    """A failed publish leaves the message ACCEPTED, not lost and not stuck: the client
    got ``internal`` and resends the same bytes, which publish it once the broker takes
    it (SMEV 3 clients resend on SMEVFailure)."""
    message_id = str(uuid1_at(START))
    raw = soap(send_request_body(bus.pki.signer("PORTAL"), message_id=uuid.UUID(message_id)))
    publish = bus.transport.publish

    async def refuse_once(direction: Direction, participant: str, message: Message) -> None:
        bus.transport.publish = publish  # type: ignore[method-assign]
        raise PublishRefused("broker refused the message: queue full")

    bus.transport.publish = refuse_once  # type: ignore[method-assign]
    refused = await bus.send(raw)
    assert (refused.status, refused.code) == (500, "internal")
    assert (await bus.journal.get(message_id)).state is MessageState.ACCEPTED
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0

    resent = await bus.send(raw)
    assert resent.ok, resent.description
    assert await bus.journal_queued_marks() == 1
    report = await bus.report(uuid.UUID(message_id))
    assert states(report.history) == ["ACCEPTED", "QUEUED"]
    delivery = await bus.zags.get_request()
    assert delivery is not None
    assert str(delivery.metadata.message_id) == message_id
    await bus.zags.ack(delivery.metadata.message_id)
    assert await bus.zags.get_request() is None


async def test_same_message_id_with_other_content_is_refused(bus: Bus) -> None:
    message_id = uuid1_at(START)
    await bus.portal.send_request(birth_request(), message_id=message_id)
    other = birth_request()
    first_name = other.find(f"{{{BIRTH}}}Child/{{{BIRTH}}}FirstName")
    assert first_name is not None
    first_name.text = "Мария"
    with pytest.raises(MessageAlreadySent, match=str(message_id)):
        await bus.portal.send_request(other, message_id=message_id)
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1


async def test_ack_of_a_message_not_held_is_not_found(bus: Bus) -> None:
    with pytest.raises(NotFound, match="has no unacknowledged message"):
        await bus.zags.ack(uuid1_at(START))
    sent = await bus.portal.send_request(birth_request())
    # Queued but not pulled yet: ZAGS holds nothing, and PORTAL never receives requests.
    with pytest.raises(NotFound):
        await bus.zags.ack(sent.message_id)
    delivery = await bus.zags.get_request()
    assert delivery is not None
    with pytest.raises(NotFound):
        await bus.portal.ack(sent.message_id)  # held by ZAGS, not by PORTAL
    await bus.zags.ack(sent.message_id)
    with pytest.raises(NotFound):
        await bus.zags.ack(sent.message_id)  # twice


async def test_get_status_hands_out_each_status_change_once_to_the_sender(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    # Another participant is told nothing about PORTAL's messages.
    assert await bus.client("FNS").get_status() is None
    delivery = await bus.zags.get_request()
    assert delivery is not None
    await bus.zags.ack(delivery.metadata.message_id)

    notices = []
    while (notice := await bus.portal.get_status()) is not None:
        notices.append(notice)
    assert {n.original_message_id for n in notices} == {sent.message_id}
    # One notice per change of the 1.1 code, in order (QUEUED and DELIVERED share one).
    assert [n.category for n in notices] == [
        "requestIsQueued",
        "requestIsAcceptedBySmev",
        "underProcessing",
    ]
    assert notices[-1].details is not None
    assert "ACKED" in notices[-1].details
    # Handed out once: nothing more until the message moves again.
    assert await bus.portal.get_status() is None
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    later = await bus.portal.get_status()
    assert later is not None
    assert (later.original_message_id, later.category) == (
        sent.message_id,
        "responseIsAcceptedBySmev",
    )
    # ZAGS, the response's sender, hears about its response.
    answer = await bus.zags.get_status()
    assert answer is not None
    assert answer.category == "responseIsAcceptedBySmev"


async def test_a_replayed_get_status_is_refused(bus: Bus) -> None:
    await bus.portal.send_request(birth_request())
    body = signed(m.build_get_status(bus.clock.now()), bus.pki.signer("PORTAL"))
    first = await bus.send(soap(body))
    assert first.ok
    again = await bus.send(soap(body))
    assert again.code == "replayed_request"


async def test_get_incoming_queue_statistics_counts_the_callers_queues(bus: Bus) -> None:
    await bus.portal.send_request(birth_request())
    await bus.portal.send_request(birth_request())
    stats = await bus.zags.get_incoming_queue_statistics()
    assert {(s.queue_name, s.pending) for s in stats} == {
        ("requests.ZAGS", 2),
        ("responses.ZAGS", 0),
    }
    portal = await bus.portal.get_incoming_queue_statistics()
    assert {s.pending for s in portal} == {0}


async def test_provider_may_not_answer_a_request_sent_to_another(bus: Bus) -> None:
    to_mvd = await bus.portal.send_request(content("mvd-passport-validity.request"))
    assert to_mvd.recipient is not None
    assert to_mvd.recipient.mnemonic == "MVD_MIGR"
    with pytest.raises(AccessDenied, match="ZAGS did not receive request"):
        await bus.zags.send_response(str(to_mvd.message_id), content=birth_response())
    with pytest.raises(AccessDenied):
        await bus.zags.send_response(
            str(to_mvd.message_id), content=content("mvd-passport-validity.response")
        )
    with pytest.raises(NotFound, match="names no request"):
        await bus.zags.send_response(str(uuid1_at(START)), content=birth_response())
    assert await bus.depth(Direction.RESPONSES, "PORTAL") == 0
    # MVD_MIGR itself may answer it.
    mvd = bus.client("MVD_MIGR")
    delivery = await mvd.get_request(namespace=PASSPORT)
    assert delivery is not None
    await mvd.send_response(delivery.reply_to, content=content("mvd-passport-validity.response"))
    assert await bus.depth(Direction.RESPONSES, "PORTAL") == 1


async def test_response_of_another_type_than_the_request_is_refused(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    # ZAGS does provide death records, but this request asked for a birth record.
    with pytest.raises(SchemaViolation, match="death-record") as refused:
        await bus.zags.send_response(
            delivery.reply_to, content=content("zags-death-record.response")
        )
    assert BIRTH in str(refused.value)
    # A request root where a response is expected is refused too.
    with pytest.raises(SchemaViolation, match="BirthRecordResponse"):
        await bus.zags.send_response(delivery.reply_to, content=birth_request())
    assert await bus.depth(Direction.RESPONSES, "PORTAL") == 0
    assert (await bus.report(sent.message_id)).status == "DELIVERED"


async def test_rejection_reaches_the_portal(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    rejection = m.Rejection("NO_DATA", "no birth act record matches the request")
    await bus.zags.send_response(delivery.reply_to, rejections=[rejection])
    await bus.zags.ack(delivery.metadata.message_id)

    got = await bus.portal.get_response()
    assert got is not None
    assert got.original_message_id == sent.message_id
    answer = read_response_data(got.response_data)
    assert answer.content is None
    assert answer.rejections == (rejection,)
    await bus.portal.ack(got.metadata.message_id)
    assert (await bus.report(sent.message_id)).status == "RESPONSE_DELIVERED"


async def test_a_refusing_answer_is_journaled_with_its_code(tmp_path: Path) -> None:
    """The KPIs count an AGENCY_UNAVAILABLE answer against the agency's availability:
    the journal keeps a refusal's code in its own column."""
    db = tmp_path / "journal.db"
    bus = await open_bus(journal=open_journal(f"sqlite:///{db}"))
    try:
        await bus.portal.send_request(birth_request())
        delivery = await bus.zags.get_request()
        assert delivery is not None
        rejection = m.Rejection("AGENCY_UNAVAILABLE", "the civil registry does not answer")
        await bus.zags.send_response(delivery.reply_to, rejections=[rejection])
    finally:
        await bus.close()
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT kind, rejection_code FROM messages").fetchall()
    assert sorted(rows, key=str) == sorted(
        [("request", None), ("response", "AGENCY_UNAVAILABLE")], key=str
    )


async def test_unacked_pull_comes_back_after_the_visibility_timeout() -> None:
    bus = await open_bus(policy=QueuePolicy(visibility_timeout=timedelta(milliseconds=50)))
    try:
        sent = await bus.portal.send_request(birth_request())
        first = await bus.zags.get_request()
        assert first is not None
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
        # The transport's timer gives it back; wait for that, bounded.
        lapsed = await asyncio.wait_for(bus.transport.settled.get(), timeout=10)
        assert lapsed.message.message_id == str(sent.message_id)
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1

        # The memory transport reads its policy per pull: give the second pull time to
        # be acked however slow this machine is right now.
        bus.transport.policy = QueuePolicy(visibility_timeout=timedelta(minutes=5))
        again = await bus.zags.get_request()
        assert again is not None
        assert again.metadata.message_id == sent.message_id
        assert c14n(again.request_data) == c14n(first.request_data)
        await bus.zags.ack(again.metadata.message_id)
        report = await bus.report(sent.message_id)
        assert states(report.history) == [
            "ACCEPTED",
            "QUEUED",
            "DELIVERED",
            "QUEUED",
            "DELIVERED",
            "ACKED",
        ]
        assert report.history[3].reason == "not acknowledged in time"
        assert report.history[4].reason == "attempt 2"
        assert await bus.zags.get_request() is None
    finally:
        await bus.close()


async def test_ack_after_the_visibility_timeout_counts_and_the_copy_is_dropped() -> None:
    # Also what happens when the Ack reaches another gateway process than the pull.
    bus = await open_bus(policy=QueuePolicy(visibility_timeout=timedelta(milliseconds=50)))
    try:
        sent = await bus.portal.send_request(birth_request())
        first = await bus.zags.get_request()
        assert first is not None
        await asyncio.wait_for(bus.transport.settled.get(), timeout=10)
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1

        await bus.zags.ack(first.metadata.message_id)  # late, but ZAGS did get it
        report = await bus.report(sent.message_id)
        assert states(report.history) == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]
        # The copy back in the queue is not handed out again, and leaves the queue.
        assert await bus.zags.get_request() is None
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
        with pytest.raises(NotFound):
            await bus.zags.ack(first.metadata.message_id)
    finally:
        await bus.close()


async def test_bus_signed_replies_verify_with_the_registered_bus_certificate(bus: Bus) -> None:
    expected = fingerprint(bus_certificate(bus))
    await bus.portal.send_request(birth_request())
    send_request_reply = last_reply_body(bus)
    delivery = await bus.zags.get_request()
    assert delivery is not None
    get_request_reply = last_reply_body(bus)
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    send_response_reply = last_reply_body(bus)
    await bus.portal.get_response()
    get_response_reply = last_reply_body(bus)
    for reply in (send_request_reply, get_request_reply, send_response_reply, get_response_reply):
        cert = verify_element(_bus_signed(reply), bus.verifier, "SMEVSignature")
        assert common_name(cert) == BUS, etree.QName(reply).localname
        assert fingerprint(cert) == expected, etree.QName(reply).localname


async def test_client_refuses_a_reply_not_signed_by_the_bus(bus: Bus) -> None:
    portal = bus.portal
    # The same client, but expecting the bus under another name: the signature is
    # valid and trusted, yet not the bus's, so the reply is not believed.
    fooled = ParticipantClient(
        signer=portal.signer,
        verifier=portal.verifier,
        clock=bus.clock,
        call=bus.handle,
        bus_mnemonic="ZAGS",
    )
    with pytest.raises(SignatureInvalid, match="not by the bus ZAGS"):
        await fooled.send_request(birth_request())


async def test_bus_signature_covers_the_metadata_it_reports(bus: Bus) -> None:
    """The SendRequestResponse signature is over exactly the MessageMetadata returned."""
    await bus.portal.send_request(birth_request())
    reply = last_reply_body(bus)
    metadata = reply.find(qname(SMEV_TYPES, "MessageMetadata"))
    assert metadata is not None
    recipient = metadata.find(f"{{{SMEV_TYPES}}}Recipient/{{{SMEV_TYPES}}}Mnemonic")
    assert recipient is not None
    recipient.text = "FNS"
    with pytest.raises(SignatureInvalid, match="changed after signing"):
        verify_element(reply, bus.verifier, "SMEVSignature")


MARRIAGE = "urn://smevbus/types/zags/marriage-record/1.0"


async def test_get_request_filtered_by_type_sets_other_types_aside_in_order(bus: Bus) -> None:
    birth = await bus.portal.send_request(birth_request())
    marriage = await bus.portal.send_request(content("zags-marriage-record.request"))

    # Asked for marriage records only: the birth record queued ahead is not handed out.
    got = await bus.zags.get_request(MARRIAGE)
    assert got is not None
    assert got.metadata.message_id == marriage.message_id
    assert await bus.zags.get_request(MARRIAGE) is None
    assert await bus.zags.get_request(PASSPORT) is None
    # ... nor journaled as delivered: it waits, first in line for the next pull.
    assert await bus.journal_queued_marks() == 1  # the birth record's; not the marriage's
    assert (await bus.report(birth.message_id)).status == "QUEUED"
    first = await bus.zags.get_request()
    assert first is not None
    assert first.metadata.message_id == birth.message_id
    for delivery in (got, first):
        await bus.zags.ack(delivery.metadata.message_id)
    assert await bus.zags.get_request() is None
    assert await bus.depths() == dict.fromkeys(await bus.depths(), 0)


async def test_set_aside_message_goes_back_to_the_queue_after_the_visibility_timeout() -> None:
    bus = await open_bus(policy=QueuePolicy(visibility_timeout=timedelta(milliseconds=50)))
    try:
        sent = await bus.portal.send_request(birth_request())
        assert await bus.zags.get_request(MARRIAGE) is None
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0
        lapsed = await asyncio.wait_for(bus.transport.settled.get(), timeout=10)
        assert lapsed.message.message_id == str(sent.message_id)
        assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
        bus.transport.policy = QueuePolicy(visibility_timeout=timedelta(minutes=5))
        again = await bus.zags.get_request(BIRTH)
        assert again is not None
        assert again.metadata.message_id == sent.message_id
        await bus.zags.ack(again.metadata.message_id)
        history = states((await bus.report(sent.message_id)).history)
        assert history == ["ACCEPTED", "QUEUED", "DELIVERED", "ACKED"]
    finally:
        await bus.close()


async def test_get_response_filtered_by_type(bus: Bus) -> None:
    birth = await bus.portal.send_request(birth_request())
    passport = await bus.portal.send_request(content("mvd-passport-validity.request"))
    mvd = bus.client("MVD_MIGR")
    for provider, answer in ((bus.zags, birth_response()), (mvd, None)):
        delivery = await provider.get_request()
        assert delivery is not None
        reply = answer if answer is not None else content("mvd-passport-validity.response")
        await provider.send_response(delivery.reply_to, content=reply)
        await provider.ack(delivery.metadata.message_id)

    got = await bus.portal.get_response(PASSPORT)
    assert got is not None
    assert got.original_message_id == passport.message_id
    await bus.portal.ack(got.metadata.message_id)
    rest = await bus.portal.get_response()
    assert rest is not None
    assert rest.original_message_id == birth.message_id
    await bus.portal.ack(rest.metadata.message_id)


async def test_a_second_final_answer_is_refused_a_retried_one_is_not(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    answer_id = bus.zags.ids.new()
    await bus.zags.send_response(delivery.reply_to, content=birth_response(), message_id=answer_id)
    await bus.zags.ack(delivery.metadata.message_id)
    # The same answer again (a retry after a lost reply): idempotent.
    await bus.zags.send_response(delivery.reply_to, content=birth_response(), message_id=answer_id)
    # Another answer (a provider handed a redundant copy of the request): refused.
    with pytest.raises(MessageAlreadySent, match="already has its final answer"):
        await bus.zags.send_response(delivery.reply_to, content=birth_response())
    responses = await bus.journal.responses_to(str(sent.message_id))
    assert [r.message_id for r in responses] == [str(answer_id)]
    assert await bus.depth(Direction.RESPONSES, "PORTAL") == 1


async def test_of_two_different_answers_at_once_one_is_journaled(bus: Bus) -> None:
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None

    outcomes = await asyncio.gather(
        *(bus.zags.send_response(delivery.reply_to, content=birth_response()) for _ in range(2)),
        return_exceptions=True,
    )

    [answered] = [o for o in outcomes if not isinstance(o, BaseException)]
    assert [type(o) for o in outcomes if isinstance(o, BaseException)] == [MessageAlreadySent]
    [journaled] = await bus.journal.responses_to(str(sent.message_id))
    assert journaled.message_id == str(answered.message_id)
    assert await bus.depth(Direction.RESPONSES, "PORTAL") == 1


async def test_ack_at_another_router_after_the_answer_is_accepted(bus: Bus) -> None:
    other = Router(bus.ctx, bus.transport, bus.journal)  # a second process
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    await bus.zags.send_response(delivery.reply_to, content=birth_response())
    await other.settle("ZAGS", str(sent.message_id), accepted=True)  # no NotFound
    assert (await bus.journal.get(str(sent.message_id))).state is MessageState.RESPONDED
    with pytest.raises(NotFound):  # not PORTAL's to acknowledge
        await other.settle("PORTAL", str(sent.message_id), accepted=True)


async def test_a_pulled_request_is_answered_as_the_pull_left_it() -> None:
    """The pull's DELIVERED record is what SendResponse's conditional write starts from:
    the answer needs no read of the request (one statement on PostgreSQL)."""
    journal = open_journal("sqlite://")
    seen: list[MessageRecord | None] = []
    answer = journal.answer

    async def spy(response: NewMessage, **kwargs: Any) -> Answered:
        seen.append(kwargs.get("seen"))
        return await answer(response, **kwargs)

    journal.answer = spy  # type: ignore[method-assign]
    bus = await open_bus(journal=journal)
    try:
        sent = await bus.portal.send_request(birth_request())
        delivery = await bus.zags.get_request()
        assert delivery is not None
        await bus.zags.send_response(delivery.reply_to, content=birth_response())
    finally:
        await bus.close()
    assert len(seen) == 1
    assert seen[0] is not None
    assert seen[0].message_id == str(sent.message_id)
    assert seen[0].state is MessageState.DELIVERED


async def test_an_operation_logs_under_its_caller_and_unbinds_it_after(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    dispatch = Router._dispatch

    def spying(self: Router, *args: Any) -> Any:
        seen.append(structlog.contextvars.get_contextvars())
        return dispatch(self, *args)

    monkeypatch.setattr(Router, "_dispatch", spying)
    with structlog.contextvars.bound_contextvars(participant="OUTER"):
        await bus.portal.send_request(birth_request())
        assert structlog.contextvars.get_contextvars()["participant"] == "OUTER"
    await bus.zags.get_request()
    assert "participant" not in structlog.contextvars.get_contextvars()
    with pytest.raises(NotFound):  # raised inside the operation: unbound all the same
        await bus.zags.ack(uuid.uuid4())
    assert "participant" not in structlog.contextvars.get_contextvars()
    assert [s["participant"] for s in seen] == ["PORTAL", "ZAGS", "ZAGS"]
