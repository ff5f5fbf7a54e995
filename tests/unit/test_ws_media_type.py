"""``POST /ws`` takes SOAP media types only: anything else is 415 with a SOAP Fault,
refused from the header before the body is read (issue 11, defect 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.transport.base import Direction
from tests.unit.bus_fixtures import Bus, open_bus, read_reply, send_request_body, soap


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    b = await open_bus()
    yield b
    await b.close()


@pytest.fixture
async def http(bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), bus.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bus") as client:
        yield client


def signed_request(bus: Bus) -> bytes:
    return soap(send_request_body(bus.pki.signer("PORTAL")))


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/json",
        "application/xml",
        "text/xml-ish",
        "multipart/form-data; boundary=x",
        None,
    ],
)
async def test_other_media_types_are_415_soap_faults_unread(
    bus: Bus, http: httpx.AsyncClient, content_type: str | None
) -> None:
    reads = 0
    raw = signed_request(bus)

    async def body() -> AsyncIterator[bytes]:
        nonlocal reads
        reads += 1
        yield raw

    headers = {"Content-Length": str(len(raw))}
    if content_type is not None:
        headers["Content-Type"] = content_type
    resp = await http.post("/ws", content=body(), headers=headers)
    assert resp.status_code == 415
    assert resp.headers["content-type"].startswith("text/xml")
    reply = read_reply(resp.status_code, resp.content)
    assert reply.code == "unsupported_media_type"
    assert "text/xml" in (reply.description or "")
    assert reads == 0
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "text/xml",
        "text/xml; charset=utf-8",
        "TEXT/XML;charset=UTF-8",
        'application/soap+xml; charset=utf-8; action="urn:SendRequest"',
        " Application/SOAP+XML ",
    ],
)
async def test_soap_media_types_are_processed(
    bus: Bus, http: httpx.AsyncClient, content_type: str
) -> None:
    resp = await http.post(
        "/ws", content=signed_request(bus), headers={"Content-Type": content_type}
    )
    assert read_reply(resp.status_code, resp.content).ok, resp.text
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1
