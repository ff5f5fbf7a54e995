"""``POST /ws`` as a bare ASGI app: the bus's hot path, in front of FastAPI.

Every SOAP exchange comes this way, so it pays for nothing it does not use: no
routing table, no dependency injection, no request model. It checks the media type
(``text/xml`` for SOAP 1.1, ``application/soap+xml``; a missing one too is refused
415 before the body is read), reads the body up to ``limit`` bytes (refused from
``Content-Length`` or while streaming, before anything is parsed), and hands it,
with the TLS client certificate if the connection has one, to ``handle``
(:meth:`gateway.bus.Bus.handle`). Whatever goes wrong is a SOAP Fault.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from cryptography import x509
from starlette.types import Receive, Scope, Send

from gateway.api.tls import client_certificate
from gateway.core.errors import MessageTooLarge, UnsupportedMediaType
from gateway.core.xml_text import escape_forbidden
from gateway.xml.faults import soap_fault

SOAP_MEDIA_TYPE = "text/xml; charset=utf-8"
#: What ``POST /ws`` takes: SOAP 1.1 (``text/xml``) and SOAP 1.2's media type.
SOAP_MEDIA_TYPES = ("text/xml", "application/soap+xml")
_CONTENT_TYPE = (b"content-type", SOAP_MEDIA_TYPE.encode())

Handle = Callable[..., Awaitable[tuple[int, bytes]]]
"""``handle(body, *, tls_client=certificate_or_None) -> (http_status, soap_reply)``."""


class _Disconnected(Exception):
    """The client went away before its body was read."""


class SoapEndpoint:
    """The ASGI app of ``POST /ws``; ``handle_of()`` finds the bus's handler per request
    (the bus is opened after the app is built)."""

    def __init__(self, handle_of: Callable[[], Handle], *, limit: int) -> None:
        self.handle_of = handle_of
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type: bytes | None = None
        declared: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        refusal = _refusal(content_type)
        if refusal is not None:
            await _reply(send, 415, soap_fault(refusal))
            return
        try:
            body = await self._read(receive, declared)
        except MessageTooLarge as exc:
            await _reply(send, 500, soap_fault(exc))
            return
        except _Disconnected:
            return
        tls_client: x509.Certificate | None = client_certificate(scope)
        status, reply = await self.handle_of()(body, tls_client=tls_client)
        await _reply(send, status, reply)

    async def _read(self, receive: Receive, declared: bytes | None) -> bytes:
        limit = self.limit
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise MessageTooLarge(
                f"request body is {declared.decode()} bytes; the limit is {limit} bytes",
                limit=limit,
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise MessageTooLarge(f"request body exceeds {limit} bytes", limit=limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_CONTENT_TYPE, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


@functools.lru_cache(maxsize=256)
def _refusal(content_type: bytes | None) -> UnsupportedMediaType | None:
    """:func:`not_soap` of a raw ``Content-Type`` header, kept per header: a client sends
    the same one (or a few, with SOAP 1.2's ``action``) every time."""
    return not_soap(None if content_type is None else content_type.decode("latin-1"))


def not_soap(content_type: str | None) -> UnsupportedMediaType | None:
    """The refusal of a ``content_type`` that is no SOAP media type (parameters such as
    charset and action are allowed, in any case); ``None`` for a SOAP one."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type in SOAP_MEDIA_TYPES:
        return None
    shown = escape_forbidden(content_type[:100]) if content_type else "missing"
    return UnsupportedMediaType(
        f"Content-Type {shown} is not SOAP; send text/xml (SOAP 1.1) or application/soap+xml",
        accepted=list(SOAP_MEDIA_TYPES),
    )
