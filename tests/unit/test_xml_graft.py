"""Copies into new documents keep every prefix: exclusive c14n signatures survive them.

lxml's append renames what it moves to the prefixes its new ancestors bind for the same
namespace URIs; exc-c14n keeps prefixes, so a signature over the part stopped verifying
(fuzz finding 5). Each test fails with a plain ``append`` of a deep copy.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from lxml import etree

from gateway.core.envelope import MessageMetadata, ParticipantRef
from gateway.crypto.envelope import sign_element, verify_element
from gateway.crypto.profiles import SignatureProfile
from gateway.xml import messages as m
from gateway.xml.graft import Grafts
from gateway.xml.namespaces import SMEV_TYPES
from gateway.xml.parse import parse_secure
from gateway.xml.soap import find_signature, unwrap_envelope, wrap_envelope
from tests.unit.crypto_fixtures import EC, dev_pki

T = f"{{{SMEV_TYPES}}}"
MESSAGE_ID = uuid.UUID("db0486d0-3c08-11f0-9a6b-0242ac120002")


def c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True)


def test_a_slot_keeps_prefixes_the_new_ancestors_bind_otherwise() -> None:
    part = etree.fromstring(b'<q:a xmlns:q="urn:x"><b xmlns="urn:x" xmlns:p="urn:p" p:k=""/></q:a>')
    root = etree.Element("{urn:x}root", nsmap={"x": "urn:x"})
    grafts = Grafts()
    grafts.slot(etree.SubElement(root, "{urn:x}holder"), part)
    etree.SubElement(root, "{urn:x}after")
    grafted = grafts.done(root)
    copy = grafted[0][0]
    assert c14n(copy) == c14n(part)
    assert [etree.QName(e).localname for e in grafted.iter(tag=etree.Element)] == [
        "root",
        "holder",
        "a",
        "b",
        "after",
    ]


def test_without_slots_the_same_tree_comes_back() -> None:
    root = etree.Element("r")
    assert Grafts().done(root) is root


def test_exc_c14n_signature_verifies_after_wrapping_content_with_one_uri_two_ways() -> None:
    """The shrunk fuzz example: ``xmlns="urn:a"`` below ``xmlns:a="urn:a"`` (which the copy
    into the SendRequest had moved up) was renamed ``a:`` by the copy into the Envelope."""
    content = parse_secure(b'<a><a xmlns="urn:a"><a xmlns="" xmlns:a="urn:a" a:a=""/></a></a>')
    body = m.build_send_request(MESSAGE_ID, content)
    sign_element(body, dev_pki().signer(EC, SignatureProfile.EXC_C14N))
    _operation, received = unwrap_envelope(parse_secure(wrap_envelope(body)))
    verify_element(received, dev_pki().verifier())


def _consumer_request_with_prefix(prefix: str) -> bytes:
    """A SendRequest as a client naming the types namespace ``prefix`` sends it, signed
    with exclusive c14n over that spelling."""
    content = etree.fromstring(b'<r xmlns="urn:a"><v>1</v></r>')
    spelled = etree.tostring(m.build_send_request(MESSAGE_ID, content))
    spelled = spelled.replace(b"smev:", prefix.encode() + b":").replace(
        b"xmlns:smev=", b"xmlns:" + prefix.encode() + b"="
    )
    body = etree.fromstring(spelled)
    sign_element(body, dev_pki().signer(EC, SignatureProfile.EXC_C14N))
    return etree.tostring(body)


def test_consumer_signature_verifies_at_the_provider_whatever_its_prefixes() -> None:
    """A consumer's ``ns1:SenderProvidedRequestData`` was renamed ``smev:`` when the bus
    copied it into GetRequestResponse: its exc-c14n signature failed at the provider."""
    stored = parse_secure(_consumer_request_with_prefix("ns1"))
    verify_element(stored, dev_pki().verifier())
    signature = find_signature(stored)
    assert signature is not None
    delivery = m.RequestDelivery(
        request_data=stored.find(f"{T}SenderProvidedRequestData"),  # type: ignore[arg-type]
        metadata=MessageMetadata(
            message_id=MESSAGE_ID,
            message_type="urn:a",
            sender=ParticipantRef(mnemonic="PORTAL"),
            sending_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        reply_to=str(MESSAGE_ID),
        sender_signature=signature,
    )
    reply = m.build_get_request_response(delivery)
    _operation, received = unwrap_envelope(parse_secure(wrap_envelope(reply)))
    request = received.find(f"{T}RequestMessage/{T}Request")
    assert request is not None
    assert request[0].prefix == "ns1"
    verify_element(request, dev_pki().verifier(), "SenderInformationSystemSignature")
