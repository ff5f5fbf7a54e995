"""The whole bus on GOST R 34.10-2012: a region whose CA, bus and participants sign with GOST.

The bus (SMEVBUS), PORTAL and ZAGS hold GOST keys from a GOST dev CA; MVD_MIGR (EC)
and FNS (RSA) hold keys certified by the same CA (a mixed registry). Every exchange
goes through ``Router.handle`` as signed SOAP bytes, as in ``test_router``; what the
bus signs is checked again by gostcrypto, and a request signed wholly outside
``gateway.crypto`` crosses the bus.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from gateway.crypto import algorithms as alg
from gateway.crypto import devpki
from gateway.crypto.certificates import common_name
from gateway.crypto.envelope import verify_element
from gateway.crypto.profiles import DS_NS
from gateway.testing.bus import (
    BUS,
    INN,
    PASSPORT,
    START,
    Bus,
    birth_request,
    birth_response,
    content,
    open_bus,
    send_request_body,
    signer_for,
    soap,
    uuid1_at,
)
from gateway.transport.base import Direction
from gateway.xml import messages as m
from gateway.xml.namespaces import SMEV_TYPES, qname
from gateway.xml.readers import read_request_data, read_response_data
from gateway.xml.soap import (
    SignatureContainer,
    find_signature,
    signature_target,
    unwrap_envelope,
)
from tests.unit.gost_fixtures import (
    GostcryptoKey,
    gost_bus_pki,
    gostcrypto_verifies,
    independent_signature,
    needs_gost,
)

pytestmark = needs_gost

DS = f"{{{DS_NS}}}"


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = await open_bus(pki=gost_bus_pki())
    yield b
    await b.close()


def last_reply_body(bus: Bus) -> etree._Element:
    status, raw = bus.exchanges[-1][1]
    assert status == 200
    return unwrap_envelope(etree.fromstring(raw))[1]


def signature_method(element: etree._Element, container: SignatureContainer) -> str | None:
    signature = find_signature(element, container)
    assert signature is not None
    method = signature.find(f"{DS}SignedInfo/{DS}SignatureMethod")
    assert method is not None
    return method.get("Algorithm")


def _bus_signed(reply: etree._Element) -> etree._Element:
    """The element holding the bus's SMEVSignature: the reply, or (1.1) the
    RequestMessage / ResponseMessage inside it."""
    for name in ("RequestMessage", "ResponseMessage"):
        found = reply.find(f"{{{SMEV_TYPES}}}{name}")
        if found is not None:
            return found
    return reply


def check_bus_signature(bus: Bus, answer: etree._Element) -> None:
    """The reply's SMEVSignature: GOST, by the bus, and accepted by gostcrypto too."""
    name = etree.QName(answer).localname
    reply = _bus_signed(answer)
    assert signature_method(reply, "SMEVSignature") == alg.GOST2012_256, name
    cert = verify_element(reply, bus.ctx.verifier, "SMEVSignature")
    assert common_name(cert) == BUS, name
    signature = find_signature(reply, "SMEVSignature")
    assert signature is not None
    signed_info = signature.find(f"{DS}SignedInfo")
    assert signed_info is not None
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True)
    value = base64.b64decode(signature.findtext(f"{DS}SignatureValue") or "")
    assert gostcrypto_verifies(bus.pki.cert_pem(BUS), canonical, value), name
    assert not gostcrypto_verifies(bus.pki.cert_pem(BUS), canonical + b" ", value), name


async def test_round_trip_signed_with_gost_by_participants_and_bus(bus: Bus) -> None:
    assert bus.portal.signer.algorithm is alg.GOST2012_256_ALGORITHM
    assert bus.zags.signer.algorithm is alg.GOST2012_256_ALGORITHM
    assert bus.ctx.bus_signer.algorithm is alg.GOST2012_256_ALGORITHM

    asked = birth_request()
    sent = await bus.portal.send_request(asked)
    check_bus_signature(bus, last_reply_body(bus))

    delivery = await bus.zags.get_request()
    assert delivery is not None
    assert delivery.metadata.message_id == sent.message_id
    reply = last_reply_body(bus)
    check_bus_signature(bus, reply)
    inner = reply.find(f"{{{SMEV_TYPES}}}RequestMessage/{{{SMEV_TYPES}}}Request")
    assert inner is not None
    assert signature_method(inner, "SenderInformationSystemSignature") == alg.GOST2012_256
    author = verify_element(inner, bus.ctx.verifier, "SenderInformationSystemSignature")
    assert common_name(author) == "PORTAL"
    assert read_request_data(delivery.request_data).content is not None

    responded = await bus.zags.send_response(delivery.reply_to, content=birth_response())
    check_bus_signature(bus, last_reply_body(bus))
    await bus.zags.ack(delivery.metadata.message_id)

    got = await bus.portal.get_response()
    assert got is not None
    assert got.metadata.message_id == responded.message_id
    reply = last_reply_body(bus)
    check_bus_signature(bus, reply)
    inner = reply.find(f"{{{SMEV_TYPES}}}ResponseMessage/{{{SMEV_TYPES}}}Response")
    assert inner is not None
    assert signature_method(inner, "SenderInformationSystemSignature") == alg.GOST2012_256
    author = verify_element(inner, bus.ctx.verifier, "SenderInformationSystemSignature")
    assert common_name(author) == "ZAGS"
    assert read_response_data(got.response_data).to == str(sent.message_id)
    await bus.portal.ack(got.metadata.message_id)

    report = await bus.report(sent.message_id)
    assert report.status == "RESPONSE_DELIVERED"
    assert await bus.depths() == dict.fromkeys(await bus.depths(), 0)


@pytest.mark.parametrize(
    ("provider", "message_type", "name", "algorithm"),
    [
        ("MVD_MIGR", PASSPORT, "mvd-passport-validity", alg.ECDSA_SHA256),
        ("FNS", INN, "fns-inn", alg.RSA_SHA256),
    ],
)
async def test_mixed_registry_gost_consumer_and_ec_or_rsa_provider(
    bus: Bus, provider: str, message_type: str, name: str, algorithm: str
) -> None:
    client = bus.client(provider)
    assert client.signer.algorithm.uri == algorithm
    sent = await bus.portal.send_request(content(f"{name}.request"))
    delivery = await client.get_request(message_type)
    assert delivery is not None
    await client.send_response(delivery.reply_to, content=content(f"{name}.response"))
    await client.ack(delivery.metadata.message_id)
    got = await bus.portal.get_response(message_type)
    assert got is not None
    assert got.original_message_id == sent.message_id
    reply = last_reply_body(bus)
    check_bus_signature(bus, reply)
    inner = reply.find(f"{{{SMEV_TYPES}}}ResponseMessage/{{{SMEV_TYPES}}}Response")
    assert inner is not None
    assert signature_method(inner, "SenderInformationSystemSignature") == algorithm
    author = verify_element(inner, bus.ctx.verifier, "SenderInformationSystemSignature")
    assert common_name(author) == provider
    await bus.portal.ack(got.metadata.message_id)


async def test_request_signed_by_gostcrypto_crosses_the_bus(bus: Bus) -> None:
    """PORTAL's key and signature are gostcrypto's (no gateway.crypto on the sending
    side but the certificate); the bus accepts it and ZAGS verifies it."""
    portal = GostcryptoKey.issue(
        bus.pki.ca,
        "PORTAL",
        not_before=START - timedelta(hours=1),
        private=bytes.fromhex("5b7a9f8d0c2e4f61a3b5c7d9e1f20314253647586970a1b2c3d4e5f607182930"),
    )
    body = m.build_send_request(uuid1_at(START), birth_request())
    target = body.find(qname(SMEV_TYPES, "SenderProvidedRequestData"))
    assert target is not None
    holder = etree.SubElement(body, qname(SMEV_TYPES, "CallerInformationSystemSignature"))
    independent_signature(target, holder, portal)

    reply = await bus.send(soap(body))

    assert reply.ok, (reply.code, reply.description)
    check_bus_signature(bus, unwrap_envelope(reply.root)[1])
    delivery = await bus.zags.get_request()
    assert delivery is not None
    inner = last_reply_body(bus).find(f"{{{SMEV_TYPES}}}RequestMessage/{{{SMEV_TYPES}}}Request")
    assert inner is not None
    author = verify_element(inner, bus.ctx.verifier, "SenderInformationSystemSignature")
    assert author.public_bytes(Encoding.PEM) == portal.cert_pem


def _tampered(bus: Bus) -> bytes:
    body = send_request_body(bus.pki.signer("PORTAL"))
    deepest = list(signature_target(body).iter())[-1]
    deepest.set("tampered", "1")  # after signing
    return soap(body)


def _signed_with(which: str) -> Callable[[Bus], bytes]:
    def make(bus: Bus) -> bytes:
        issued: devpki.Issued = getattr(bus.pki, which)
        assert devpki.key_type_of(issued.cert) == devpki.GOST
        return soap(send_request_body(signer_for(issued)))

    return make


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (_tampered, "signature_invalid", "changed after signing"),
        (_signed_with("untrusted"), "certificate_untrusted", "does not verify with that CA"),
        (_signed_with("expired"), "certificate_expired", "expired"),
        (_signed_with("not_yet_valid"), "certificate_expired", "not valid before"),
        (_signed_with("revoked"), "certificate_untrusted", "revoked"),
    ],
    ids=["tampered", "untrusted_ca", "expired", "not_yet_valid", "revoked"],
)
async def test_bad_gost_signatures_are_refused_with_the_stable_code(
    bus: Bus, make: Callable[[Bus], bytes], code: str, words: str
) -> None:
    reply = await bus.send(make(bus))
    assert reply.status == 500
    assert reply.code == code
    assert reply.description is not None
    assert words in reply.description
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0


def test_the_gost_bus_pki_is_gost_where_it_should_be() -> None:
    pki = gost_bus_pki()
    assert devpki.key_type_of(pki.ca.cert) == devpki.GOST
    assert pki.ca.cert.signature_algorithm_oid.dotted_string == "1.2.643.7.1.1.3.2"
    kinds = {
        mnemonic: devpki.key_type_of(x509.load_pem_x509_certificate(pki.cert_pem(mnemonic)))
        for mnemonic in ("SMEVBUS", "PORTAL", "ZAGS", "MVD_MIGR", "FNS")
    }
    assert kinds == {
        "SMEVBUS": "gost2012-256",
        "PORTAL": "gost2012-256",
        "ZAGS": "gost2012-256",
        "MVD_MIGR": "ec",
        "FNS": "rsa",
    }
    assert not devpki.cert_path(pki.keys_dir, devpki.TLS_SERVER).exists()
