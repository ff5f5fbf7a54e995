"""The HTTP face of the bus (FastAPI): SOAP ``/ws``, its WSDL, ``/health``, ``/ready``.

``POST /ws`` hands the body to :meth:`Router.handle` unchanged (with the TLS client
certificate, if the connection has one): the SOAP endpoint is a thin skin over the
same code path the demo and tests drive. A body that is not SOAP by its
``Content-Type`` (``text/xml`` for SOAP 1.1, ``application/soap+xml``; a missing one
too) is refused with 415 before it is read; oversize bodies are refused from
``Content-Length`` or while streaming, before anything is parsed.

Opened from settings, the app runs two background loops: the aggregator's (pull the
portals' replies, fire deadlines) and the result callbacks' (POST due callbacks). They
are separate tasks so that a slow or dead callback receiver never delays a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from gateway.aggregator import Aggregator
from gateway.aggregator.callback_guard import CallbackGuard
from gateway.aggregator.callbacks import (
    CallbackDispatcher,
    CallbackSender,
    HttpSender,
    RetryPolicy,
)
from gateway.api import wsdl
from gateway.api.auth import TokenAuth
from gateway.api.body_limit import BodyLimit
from gateway.api.rest import rest_router
from gateway.api.tls import client_certificate
from gateway.api.views import callback_body
from gateway.config import Settings
from gateway.core.errors import MessageTooLarge, SmevbusError, UnsupportedMediaType
from gateway.core.xml_text import escape_forbidden
from gateway.router.router import Router
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.service_requests import ServiceRequestRecord
from gateway.wire.rest import PREFIX
from gateway.xml.faults import soap_fault

log = structlog.get_logger(__name__)

SOAP_MEDIA_TYPE = "text/xml; charset=utf-8"
#: What ``POST /ws`` takes: SOAP 1.1 (``text/xml``) and SOAP 1.2's media type.
SOAP_MEDIA_TYPES = ("text/xml", "application/soap+xml")
#: Room for the SOAP envelope and signature around the largest accepted content.
ENVELOPE_OVERHEAD = 64 * 1024


def create_app(
    settings: Settings,
    router: Router | None = None,
    aggregator: Aggregator | None = None,
    callback_guard: CallbackGuard | None = None,
) -> FastAPI:
    """The app; with ``router`` None it opens one (and the aggregator) from ``settings``
    at startup. A caller handing in ``router`` and ``aggregator`` drives the aggregator's
    pumping itself (tests). ``callback_guard`` decides where result callbacks may go
    (default: as ``settings`` say, names resolved by the operating system)."""
    from gateway.assembly import callback_guard as guard_of

    guard = callback_guard or guard_of(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from gateway.assembly import open_aggregator, open_router

        if router is not None:
            yield
            return
        app.state.router = await open_router(settings)
        app.state.aggregator = open_aggregator(settings, app.state.router)
        # What start-up built lives as long as the process: out of every collection, so
        # that a full one (its GIL held, the event loop stalled) costs milliseconds.
        gc.freeze()
        portals = sorted(set(settings.api_tokens.values()))
        sender = HttpSender(guard, timeout=settings.callback_timeout_s)
        dispatcher = callback_dispatcher(settings, app.state.aggregator, sender)
        tasks = [
            asyncio.create_task(
                _aggregate(
                    app.state.aggregator,
                    portals,
                    settings.aggregator_interval_s,
                    app.state.router.response_queued,
                )
            ),
            asyncio.create_task(
                _deliver_callbacks(
                    dispatcher, settings.aggregator_interval_s, app.state.aggregator.finalized
                )
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sender.aclose()
            await app.state.router.close()

    app = FastAPI(
        title="smevbus",
        summary=(
            "Interagency message bus: SOAP message exchange at /ws (WSDL at /ws?wsdl), "
            "service requests at /api/v1"
        ),
        version="0.1.0",
        lifespan=lifespan,
    )
    if router is not None:
        app.state.router = router
        app.state.aggregator = aggregator
    app.include_router(
        rest_router(
            TokenAuth(
                settings.api_tokens,
                allowed=lambda participant: participant in app.state.router.ctx.registry.mnemonics,
            ),
            callback_guard=guard,
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
        status, reply = await request.app.state.router.handle(
            body, tls_client=client_certificate(request.scope)
        )
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
        checks = await request.app.state.router.readiness()
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


async def _rounds(
    work: Callable[[], Awaitable[None]], interval: float, wake: asyncio.Event
) -> None:
    """Run ``work`` forever: again as soon as ``wake`` is set (work this process made),
    and every ``interval`` seconds anyway (work other processes left, timers).
    ``work`` logs its own failures: a round that fails is retried by the next one."""
    while True:
        wake.clear()
        await work()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=interval)


async def _aggregate(
    aggregator: Aggregator, portals: list[str], interval: float, wake: asyncio.Event
) -> None:
    """Pull the portals' replies into their service requests and fire deadlines, forever;
    ``wake`` is set when this process queues a response. A failure never stops the
    gateway or loses a reply (replies are acked only after they are saved)."""

    async def work() -> None:
        for portal in portals:
            try:
                await aggregator.pump_responses(portal)
            except Exception:
                log.exception("aggregator_pump_failed", participant=portal)
        try:
            await aggregator.fire_deadlines()
        except Exception:
            log.exception("aggregator_deadlines_failed")

    await _rounds(work, interval, wake)


def callback_dispatcher(
    settings: Settings, aggregator: Aggregator, sender: CallbackSender
) -> CallbackDispatcher:
    """The result-callback dispatcher on the aggregator's store, as ``settings`` say."""
    base_url = settings.base_url
    secret = settings.callback_secret

    def render(record: ServiceRequestRecord) -> bytes:
        return callback_body(record, base_url)

    timeout = timedelta(seconds=settings.callback_timeout_s)
    return CallbackDispatcher(
        CallbackOutbox(aggregator.store),
        sender,
        render,
        clock=aggregator.clock,
        policy=RetryPolicy(
            max_attempts=settings.callback_max_attempts,
            first_delay=timedelta(seconds=settings.callback_backoff_s),
            max_delay=timedelta(seconds=settings.callback_backoff_max_s),
            # A POST ends by its timeout; the lease outlasts it with room to settle.
            lease=2 * timeout + timedelta(seconds=30),
        ),
        secret=None if secret is None else secret.get_secret_value().encode(),
        allowed_hosts=settings.callback_hosts,
    )


async def _deliver_callbacks(
    dispatcher: CallbackDispatcher, interval: float, wake: asyncio.Event
) -> None:
    """POST due result callbacks, forever; ``wake`` is set when this process finishes a
    request. A failing store is logged (receivers' failures are the dispatcher's to
    record, never raised)."""

    async def work() -> None:
        try:
            await dispatcher.deliver_due()
        except Exception:
            log.exception("callback_delivery_failed")

    await _rounds(work, interval, wake)


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
