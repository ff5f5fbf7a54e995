"""What a bad-input case builder gets (:class:`World`), and the pieces they share.

A world is a running bus seen from outside: its PKI (the registry's participants and a
few bad certificates), the clock the bus reads, a signed client per participant, and a
way to post raw bytes. The in-process bus of ``gateway/testing/bus.py`` is one (a
fake clock at ``START``); a real gateway process reached over HTTP is another (the
system clock). Builders read the time from the world, never a constant, so one case
means the same thing in both.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime, timedelta
from typing import Protocol

from lxml import etree

from gateway.client.participant import ParticipantClient
from gateway.core.clock import Clock
from gateway.testing.bus import (
    BusPKI,
    birth_request,
    send_request_body,
    soap,
    uuid1_at,
)
from gateway.xml import messages as m
from gateway.xml.namespaces import SOAP_ENV, qname

#: What a refusal must never show: a stack trace, a source file, an exception class, the
#: libraries behind the bus (or their debug output), a local file's content.
LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|root:x:0:0|"
    r"\b[A-Z]\w*(?:Error|Exception)\b|"
    # \b: the GOST algorithm URI (urn:...:cpxmlsec:...) names no library.
    r"(?i:\b(?:asyncpg|sqlalchemy|aio_?pika|aiormq|pamqp|lxml|libxml|xmlsec|psycopg|"
    r"uvicorn|starlette|fastapi|pydantic|cryptography\.))"
)


def assert_nothing_leaks(answer: str) -> None:
    """Searched in the answer's text, not its markup: the 1.1 fault elements have names
    of their own (``fault:ValidationError``) that say nothing about the bus's insides."""
    try:
        text = " ".join(etree.fromstring(answer.encode()).itertext())
    except etree.XMLSyntaxError:
        text = answer
    found = LEAKS.search(text)
    assert found is None, f"answer leaks {found.group(0)!r}: {answer[:600]}"


class World(Protocol):
    @property
    def pki(self) -> BusPKI: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def portal(self) -> ParticipantClient: ...

    @property
    def zags(self) -> ParticipantClient: ...

    def client(self, mnemonic: str) -> ParticipantClient: ...

    async def handle(self, raw: bytes) -> tuple[int, bytes]:
        """Post raw bytes to the bus: ``(http_status, reply)``."""
        ...


def now(w: World) -> datetime:
    return w.clock.now()


def fresh_id(w: World, shift: timedelta = timedelta(0)) -> uuid.UUID:
    """A UUID v1 made ``shift`` from the world's now."""
    return uuid1_at(now(w) + shift)


def good_request(
    w: World,
    mnemonic: str = "PORTAL",
    *,
    message_id: uuid.UUID | None = None,
    business: etree._Element | None = None,
    eol: datetime | None = None,
    data_id: str = m.CONSUMER_ID,
) -> bytes:
    """A SendRequest (a birth record unless ``business`` is given), signed by ``mnemonic``."""
    body = send_request_body(
        w.pki.signer(mnemonic),
        message_id=message_id or fresh_id(w),
        business=business,
        eol=eol,
        data_id=data_id,
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


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def selector_body(w: World, operation: str, timestamp_shift: timedelta) -> etree._Element:
    selector = m.TypeSelector(timestamp=now(w) + timestamp_shift)
    build = m.build_get_request if operation == "GetRequest" else m.build_get_response
    return build(selector)


async def pending_request(w: World) -> str:
    """The id of a PORTAL birth request ZAGS has pulled and acknowledged (so it awaits
    an answer, and nothing is left held by the bus)."""
    await w.portal.send_request(birth_request())
    delivery = await w.zags.get_request()
    assert delivery is not None
    message_id = str(delivery.request_data.findtext("{*}MessageID"))
    await w.zags.ack(uuid.UUID(message_id))
    return message_id
