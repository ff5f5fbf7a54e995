"""``POST /ws`` takes SOAP media types only: anything else is 415 with a SOAP Fault,
refused from the header before the body is read (issue 11, defect 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.testing.bus import Bus, read_reply, send_request_body, soap
from gateway.transport.base import Direction


@pytest.fixture
async def http(bus: Bus) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(), bus.root)
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


async def test_the_fastapi_route_serves_ws_through_the_same_endpoint(bus: Bus) -> None:
    """``POST /ws`` bypasses FastAPI in front (``Gateway``); the FastAPI app alone (the
    route that puts ``/ws`` in the OpenAPI document) answers it the same way."""
    gateway = create_app(Settings(), bus.root)
    spec = gateway.api.openapi()
    assert "post" in spec["paths"]["/ws"]
    transport = httpx.ASGITransport(app=gateway.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://bus") as behind:
        refused = await behind.post("/ws", content=b"<x/>", headers={"Content-Type": "a/b"})
        assert read_reply(refused.status_code, refused.content).code == "unsupported_media_type"
        sent = await behind.post(
            "/ws", content=signed_request(bus), headers={"Content-Type": "text/xml"}
        )
    assert read_reply(sent.status_code, sent.content).ok, sent.text
    assert await bus.depth(Direction.REQUESTS, "ZAGS") == 1


async def test_a_client_gone_before_its_body_gets_no_answer(bus: Bus) -> None:
    gateway = create_app(Settings(), bus.root)
    sent: list[dict[str, object]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/ws",
        "headers": [(b"content-type", b"text/xml")],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await gateway(scope, receive, send)
    assert sent == []
    assert not (await bus.journal.find()).items  # nothing reached the router
