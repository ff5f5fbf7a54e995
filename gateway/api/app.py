"""The HTTP face of the bus: SOAP ``/ws``, its WSDL, REST ``/api/v1``, ``/health``, ``/ready``,
``/metrics``.

Two layers. In front, :class:`Gateway`, a bare ASGI app, sends ``POST /ws`` (every SOAP
exchange: the hot path) straight to :class:`~gateway.api.soap_endpoint.SoapEndpoint`,
which hands the body to :meth:`gateway.bus.Bus.handle` unchanged, with the TLS client
certificate if the connection has one. Everything else goes to FastAPI behind it: REST,
OpenAPI, the WSDL, health and readiness (FastAPI also lists ``POST /ws`` in the
OpenAPI document and would serve it through the same endpoint).

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
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api import request_id, wsdl
from gateway.api.auth import TokenAuth
from gateway.api.body_limit import BodyLimit
from gateway.api.monitoring import metrics_router
from gateway.api.operators import OperatorAuth
from gateway.api.ops import bus_console, ops_router
from gateway.api.rest import rest_router
from gateway.api.soap_endpoint import SOAP_MEDIA_TYPE, Handle, SoapEndpoint
from gateway.bus import Bus, open_bus
from gateway.config import Settings
from gateway.core.errors import SmevbusError
from gateway.ops.console_api import OpsConsole
from gateway.ui import ui_router
from gateway.wire.rest import PREFIX

log = structlog.get_logger(__name__)

#: Room for the SOAP envelope and signature around the largest accepted content.
ENVELOPE_OVERHEAD = 64 * 1024


class Gateway:
    """The ASGI app: ``POST /ws`` to the SOAP endpoint, everything else to FastAPI; every
    HTTP exchange with its request id (:mod:`gateway.api.request_id`)."""

    def __init__(self, api: FastAPI, ws: SoapEndpoint) -> None:
        self.api = api
        self.ws = ws

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)
        elif scope["path"] == "/ws" and scope["method"] == "POST":
            await request_id.serve(self.ws, scope, receive, send)
        else:
            await request_id.serve(self.api, scope, receive, send)


class _Delegated(Response):
    """A FastAPI route's answer that is another ASGI app's (the SOAP endpoint's)."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__()
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_app(
    settings: Settings, bus: Bus | None = None, *, console: OpsConsole | None = None
) -> Gateway:
    """The app on ``bus``; with ``bus`` None it opens one from ``settings`` at startup and
    runs it (background tasks included) until shutdown. A caller handing in ``bus``
    starts and closes it itself (tests). ``settings`` say the HTTP side: tokens, limits,
    where the WSDL's schemas are. ``console``: what the ops API and the dashboard ``/ui``
    show (default: a console over the bus, made at the first call)."""

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
    operators = OperatorAuth(settings.ops_tokens)
    if console is not None:
        app.state.console = console
    app.include_router(ops_router(operators, lambda: bus_console(app)))
    app.include_router(ui_router(lambda: bus_console(app), operators))
    app.include_router(metrics_router(settings))
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes, prefix=PREFIX)

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def handle() -> Handle:
        return the_bus().handle

    soap = SoapEndpoint(handle, limit=settings.max_message_bytes + ENVELOPE_OVERHEAD)

    @app.post("/ws", response_class=Response, summary="SOAP 1.1 message exchange")
    async def ws() -> Response:
        # Reached only when the app is served without its front (Gateway); listed here
        # for the OpenAPI document.
        return _Delegated(soap)

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

    @app.get("/ready", summary="Readiness: broker, journal, keys and registry")
    async def ready(request: Request) -> JSONResponse:
        checks = await the_bus().readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    return Gateway(app, soap)


def app_from_env() -> Gateway:
    """The app of one of several gateway processes (``smevbus serve --workers N``):
    each worker process builds its own from the environment."""
    from gateway.logs import configure_logging

    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets)
    return create_app(settings)
