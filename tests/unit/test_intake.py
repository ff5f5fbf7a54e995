"""What the router does with a hostile or large document before anything costly runs.

Namespace bombs and DOCTYPEs are refused by the parser: neither the bus XSD nor the
signature check is ever called for them. A request larger than the context's
``thread_above_bytes`` is read, validated and verified in a worker thread, so the
event loop goes on serving meanwhile; a small one is handled inline.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from lxml import etree

from gateway.core.errors import InvalidContent
from gateway.router import intake
from gateway.router.context import BusContext
from gateway.testing.bus import Bus, send_request_body, soap
from gateway.transport.base import Direction

ENVELOPE = b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
SIGNED = b'<smev:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER"'


def signed_request(bus: Bus) -> bytes:
    return soap(send_request_body(bus.pki.signer("PORTAL")))


def declarations(count: int) -> bytes:
    return b"".join(b' xmlns:p%d="urn:n%d"' % (i, i) for i in range(count))


@pytest.fixture
def costly_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the costly intake steps that ran (bus XSD, signature check)."""
    ran: list[str] = []
    validate, verify = intake.validate_bus_element, intake.verify_element

    def validate_spy(element: etree._Element) -> None:
        ran.append("xsd")
        validate(element)

    def verify_spy(*args: object, **kwargs: object) -> object:
        ran.append("signature")
        return verify(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(intake, "validate_bus_element", validate_spy)
    monkeypatch.setattr(intake, "verify_element", verify_spy)
    return ran


def inject(raw: bytes, after: bytes, what: bytes) -> bytes:
    assert raw.count(after) == 1
    return raw.replace(after, after + what)


@pytest.mark.parametrize("where", [ENVELOPE, SIGNED], ids=["envelope", "signed_element"])
@pytest.mark.parametrize("count", [2_000, 30_000])
async def test_namespace_bomb_is_refused_before_xsd_and_signature(
    bus: Bus, costly_steps: list[str], where: bytes, count: int
) -> None:
    reply = await bus.send(inject(signed_request(bus), where, declarations(count)))
    assert reply.code == "invalid_content"
    assert reply.description is not None
    assert "namespaces" in reply.description
    assert costly_steps == []
    assert all(depth == 0 for depth in (await bus.depths()).values())


async def test_a_normal_request_passes_both_costly_steps(bus: Bus, costly_steps: list[str]) -> None:
    assert (await bus.send(signed_request(bus))).ok
    assert costly_steps == ["xsd", "signature"]


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!-- <a --><!DOCTYPE soap:Envelope [<!ENTITY e "EXPANDED">]>',
        b'<!DOCTYPE soap:Envelope [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
    ],
)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
async def test_doctype_is_refused_before_xsd_and_signature(
    bus: Bus, costly_steps: list[str], doctype: bytes, encoding: str
) -> None:
    body = signed_request(bus).split(b"?>", 1)[1]  # without the XML declaration
    body = body.replace(b"<smev:MessageID>", b'<smev:MessageID a="&e;">', 1)
    declaration = f'<?xml version="1.0" encoding="{encoding.upper()}"?>'.encode()
    raw = (declaration + doctype + body).decode().encode(encoding)
    with pytest.raises(InvalidContent) as info:
        intake.read_envelope(raw, bus.ctx)
    assert info.value.detail["reason"] == "doctype"
    reply = await bus.send(raw)
    assert reply.code == "invalid_content"
    assert reply.description is not None
    assert "DOCTYPE" in reply.description
    assert "EXPANDED" not in reply.description
    assert "root:" not in reply.description
    assert costly_steps == []


# --- large documents off the event loop --------------------------------------------------


def large(raw: bytes, ctx: BusContext) -> bytes:
    """``raw`` made larger than ``ctx.thread_above_bytes`` by a trailing comment."""
    return raw + b"<!--" + b" " * ctx.thread_above_bytes + b"-->"


async def test_a_large_request_is_read_checked_and_verified_off_the_event_loop(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}
    loop_ran = threading.Event()
    ran_meanwhile: list[bool] = []
    read, digest = intake.read_envelope, intake.content_digest

    def read_envelope(raw: bytes, ctx: BusContext) -> intake.Incoming:
        threads["read"] = threading.get_ident()
        # Set by a coroutine: only possible while this runs if it runs off the loop.
        # The timeout only bounds a failure (on the loop this would block it).
        ran_meanwhile.append(loop_ran.wait(timeout=10))
        return read(raw, ctx)

    def content_digest(signed: etree._Element) -> str:
        threads["content"] = threading.get_ident()
        return digest(signed)

    async def meanwhile() -> None:
        loop_ran.set()

    monkeypatch.setattr(intake, "read_envelope", read_envelope)
    monkeypatch.setattr(intake, "content_digest", content_digest)
    raw = large(signed_request(bus), bus.ctx)
    handling = asyncio.create_task(bus.send(raw))
    other = asyncio.create_task(meanwhile())
    reply = await handling
    await other

    assert reply.ok
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
    assert ran_meanwhile == [True]
    assert threads["read"] != loop_thread
    assert threads["content"] != loop_thread


async def test_a_small_request_is_handled_inline(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    read = intake.read_envelope

    def read_envelope(raw: bytes, ctx: BusContext) -> intake.Incoming:
        threads.append(threading.get_ident())
        return read(raw, ctx)

    monkeypatch.setattr(intake, "read_envelope", read_envelope)
    assert (await bus.send(signed_request(bus))).ok
    assert threads == [threading.get_ident()]
