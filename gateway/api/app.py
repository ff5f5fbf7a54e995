"""The HTTP face of the bus (FastAPI): SOAP ``/ws``, its WSDL, ``/health``, ``/ready``.

``POST /ws`` hands the body to :meth:`Router.handle` unchanged (with the TLS client
certificate, if the connection has one): the SOAP endpoint is a thin skin over the
same code path the demo and tests drive. A body that is not SOAP by its
``Content-Type`` (``text/xml`` for SOAP 1.1, ``application/soap+xml``; a missing one
too) is refused with 415 before it is read; oversize bodies are refused from
``Content-Length`` or while streaming, before anything is parsed.

The app only translates HTTP: the bus it serves (router, aggregator, callbacks and
their background tasks) is built and run by the composition root, :mod:`gateway.bus`.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway.api import wsdl
from gateway.api.auth import TokenAuth
from gateway.api.body_limit import BodyLimit
from gateway.api.models import PREFIX
from gateway.api.rest import rest_router
from gateway.api.tls import client_certificate
from gateway.bus import Bus, open_bus
from gateway.config import Settings
from gateway.core.errors import MessageTooLarge, SmevbusError, UnsupportedMediaType
from gateway.core.xml_text import escape_forbidden
from gateway.xml.faults import soap_fault

log = structlog.get_logger(__name__)

SOAP_MEDIA_TYPE = "text/xml; charset=utf-8"
#: What ``POST /ws`` takes: SOAP 1.1 (``text/xml``) and SOAP 1.2's media type.
SOAP_MEDIA_TYPES = ("text/xml", "application/soap+xml")
#: Room for the SOAP envelope and signature around the largest accepted content.
ENVELOPE_OVERHEAD = 64 * 1024


def create_app(settings: Settings, bus: Bus | None = None) -> FastAPI:
    """The app on ``bus``; with ``bus`` None it opens one from ``settings`` at startup and
    runs it (background tasks included) until shutdown. A caller handing in ``bus``
    starts and closes it itself (tests). ``settings`` say the HTTP side: tokens, limits,
    where the WSDL's schemas are."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if bus is not None:
            yield
            return
        opened = await open_bus(settings)
        try:
            await opened.start()
            app.state.bus = opened
            # What start-up built lives as long as the process: out of every collection,
            # so that a full one (its GIL held, the event loop stalled) costs milliseconds.
            gc.freeze()
            yield
        finally:
            await opened.close()

    app = FastAPI(
        title="smevbus",
        summary=(
            "Interagency message bus: SOAP message exchange at /ws (WSDL at /ws?wsdl), "
            "service requests at /api/v1"
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    if bus is not None:
        app.state.bus = bus

    def the_bus() -> Bus:
        running: Bus = app.state.bus
        return running

    app.include_router(
        rest_router(
            TokenAuth(
                settings.api_tokens, allowed=lambda participant: the_bus().knows(participant)
            ),
            callback_guard=lambda _request: the_bus().guard,
        )
    )
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes, prefix=PREFIX)
    limit = settings.max_message_bytes + ENVELOPE_OVERHEAD

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.post("/ws", response_class=Response, summary="SOAP 1.1 message exchange")
    async def ws(request: Request) -> Response:
        refusal = _not_soap(request.headers.get("content-type"))
        if refusal is not None:
            return Response(soap_fault(refusal), status_code=415, media_type=SOAP_MEDIA_TYPE)
        try:
            body = await _read_limited(request, limit)
        except SmevbusError as exc:
            return Response(soap_fault(exc), status_code=500, media_type=SOAP_MEDIA_TYPE)
        status, reply = await the_bus().handle(body, tls_client=client_certificate(request.scope))
        return Response(reply, status_code=status, media_type=SOAP_MEDIA_TYPE)

    @app.get("/ws", response_class=Response, summary="WSDL of the message exchange (?wsdl)")
    async def ws_wsdl(request: Request) -> Response:
        return Response(wsdl.wsdl(settings.xsd_dir, base_url(request)), media_type=SOAP_MEDIA_TYPE)

    @app.get("/ws/xsd/{name}", response_class=Response, summary="A schema the WSDL imports")
    async def ws_xsd(name: str, request: Request) -> Response:
        try:
            text = wsdl.xsd(settings.xsd_dir, name, base_url(request))
        except SmevbusError as exc:
            return JSONResponse({"code": exc.code, "detail": exc.message}, status_code=404)
        return Response(text, media_type=SOAP_MEDIA_TYPE)

    @app.get("/health", summary="Liveness: the process serves HTTP")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: broker and journal reachable")
    async def ready(request: Request) -> JSONResponse:
        checks = await the_bus().readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    return app


def app_from_env() -> FastAPI:
    """The app of one of several gateway processes (``smevbus serve --workers N``):
    each worker process builds its own from the environment."""
    from gateway.logs import configure_logging

    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets)
    return create_app(settings)


def _not_soap(content_type: str | None) -> UnsupportedMediaType | None:
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


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise MessageTooLarge(
            f"request body is {declared} bytes; the limit is {limit} bytes", limit=limit
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MessageTooLarge(f"request body exceeds {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)
