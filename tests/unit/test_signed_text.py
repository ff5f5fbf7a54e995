"""What the agency is asked is what was signed.

Exclusive c14n drops comments and the SMEV transform drops comments and processing
instructions, so ``<Number>4829<!--x-->13</Number>`` carries the same signature as
``<Number>482913</Number>``. The bus's parser drops them too, joining the text around
them, and the adapters read a value's whole text, never only its first text node.
"""

from __future__ import annotations

import uuid

import pytest
from lxml import etree

from adapters.mvd_migration.adapter import build_mvd_adapter
from adapters.mvd_migration.answers import answer_query
from adapters.mvd_migration.dataset import build_dataset
from adapters.mvd_migration.mapping import PASSPORT
from adapters.mvd_migration.native import CONTENT_TYPE, q
from adapters.sdk.adapter import RequestContext
from gateway.crypto import devpki
from gateway.crypto.profiles import SignatureProfile
from gateway.crypto.xmldsig import XmlSigner
from gateway.testing.bus import Bus, content, send_request_body, soap
from gateway.transport.base import Direction
from gateway.xml.parse import parse_secure
from gateway.xml.readers import read_send_request
from tests.unit.agency_fixtures import PlayedAgency

NUMBER = b"<Number>482913</Number>"
SPLIT = {
    "comment": b"<Number>4829<!--x-->13</Number>",
    "processing_instruction": b"<Number>4829<?p x?>13</Number>",
    "cdata": b"<Number>4829<![CDATA[13]]></Number>",
}


def signer(bus: Bus, profile: SignatureProfile) -> XmlSigner:
    keys = bus.pki.keys_dir
    return XmlSigner.from_pem(
        devpki.key_path(keys, "PORTAL").read_bytes(),
        devpki.cert_path(keys, "PORTAL").read_bytes(),
        profile,
    )


def passport_request(bus: Bus, profile: SignatureProfile) -> bytes:
    """A signed SendRequest asking whether passport 7015 482913 is valid."""
    business = content("mvd-passport-validity.request")
    raw = soap(send_request_body(signer(bus, profile), business=business))
    assert raw.count(NUMBER) == 1
    return raw


async def queued_number(bus: Bus) -> str:
    """The passport number in the request the bus queued for the MVD, read as the bus
    and the adapters read it."""
    delivery = await bus.transport.get(Direction.REQUESTS, "MVD_MIGR")
    assert delivery is not None
    data = read_send_request(parse_secure(delivery.message.body))
    number = data.content.find(f"{{{PASSPORT}}}Passport/{{{PASSPORT}}}Number")
    assert number is not None
    assert b"<!--" not in delivery.message.body
    return str(number.text)


PROFILES = pytest.mark.parametrize("profile", list(SignatureProfile))


@PROFILES
@pytest.mark.parametrize("split", ["comment", "processing_instruction"])
async def test_a_value_split_after_signing_is_read_whole(
    bus: Bus, profile: SignatureProfile, split: str
) -> None:
    """The signature still holds (comments and PIs are not signed) and what the bus
    reads and passes on is the value that was signed."""
    raw = passport_request(bus, profile).replace(NUMBER, SPLIT[split])
    assert (await bus.send(raw)).ok
    assert await queued_number(bus) == "482913"


@PROFILES
async def test_changing_the_value_after_signing_is_refused(
    bus: Bus, profile: SignatureProfile
) -> None:
    raw = passport_request(bus, profile).replace(NUMBER, b"<Number>4829<!--x-->99</Number>")
    reply = await bus.send(raw)
    assert reply.code == "signature_invalid"
    assert await bus.depth(Direction.REQUESTS, "MVD_MIGR") == 0


@PROFILES
async def test_comments_and_pis_outside_the_signed_part_keep_the_signature(
    bus: Bus, profile: SignatureProfile
) -> None:
    raw = passport_request(bus, profile)
    raw = raw.replace(b"<soap:Header/>", b"<soap:Header><!-- routing --></soap:Header>")
    raw = raw.replace(b"<ds:SignatureValue>", b"<!-- value --><ds:SignatureValue>")
    raw = raw.replace(b"</soap:Envelope>", b"</soap:Envelope><!-- end --><?done?>")
    assert (await bus.send(raw)).ok
    assert await queued_number(bus) == "482913"


async def test_a_pi_signed_under_exclusive_c14n_alone_does_not_verify(bus: Bus) -> None:
    """Exclusive c14n (unlike the SMEV transform) keeps processing instructions: a
    signature over one covers something the bus never reads, and is refused."""
    business = content("mvd-passport-validity.request")
    number = business.find(f"{{{PASSPORT}}}Passport/{{{PASSPORT}}}Number")
    assert number is not None
    number.append(etree.ProcessingInstruction("p", "x"))
    raw = soap(send_request_body(signer(bus, SignatureProfile.EXC_C14N), business=business))
    assert (await bus.send(raw)).code == "signature_invalid"


# --- the adapter ------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLIT)
async def test_the_mvd_adapter_asks_the_agency_the_whole_value(split: str) -> None:
    """Whatever tree the adapter is handed (here one that keeps comments and PIs, not
    read by the bus's parser), the agency is asked the whole number."""
    raw = etree.tostring(content("mvd-passport-validity.request"))
    request = etree.fromstring(raw.replace(NUMBER, SPLIT[split]))
    asked: list[str | None] = []
    dataset = build_dataset()

    def agency(body: bytes) -> tuple[int, bytes, dict[str, str]]:
        query = parse_secure(body)
        asked.append(query.findtext(f"{q('PassportCheck')}/{q('DocNumber')}"))
        answer = etree.tostring(answer_query(query, dataset))
        return 200, answer, {"Content-Type": CONTENT_TYPE}

    context = RequestContext(
        message_id=uuid.uuid4(), reply_to="x", sender="PORTAL", message_type=PASSPORT
    )
    async with PlayedAgency(agency) as played:
        adapter = build_mvd_adapter(played.base_url)
        try:
            answer = await adapter.passport_validity(request, context)
        finally:
            await adapter.aclose()
    assert asked == ["482913"]
    assert isinstance(answer, etree._Element)
    assert "482913" in etree.tostring(answer, encoding="unicode")
