"""Wiring: settings in, a running router out. The one place components are chosen."""

from __future__ import annotations

import socket
from datetime import timedelta

import yarl
from aiohttp.abc import AbstractResolver

from gateway.aggregator import Aggregator, load_catalogue
from gateway.aggregator.callback_guard import CallbackGuard
from gateway.config import Settings
from gateway.core.admission import TimePolicy
from gateway.core.clock import Clock, MessageIdSource, SystemClock
from gateway.core.errors import InternalError
from gateway.core.registry import Registry, parse_registry
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.router.context import BusContext
from gateway.router.local import LocalParticipant
from gateway.router.router import Router
from gateway.store import open_stores
from gateway.transport.amqp import AmqpTransport
from gateway.transport.base import Transport
from gateway.transport.memory import MemoryTransport
from gateway.transport.topology import QueuePolicy
from gateway.xml.parse import XmlLimits
from gateway.xml.schema import type_catalog


def load_registry(settings: Settings) -> Registry:
    path = settings.registry_file
    if not path.is_file():
        raise InternalError(f"registry file {path} does not exist; set SMEVBUS_REGISTRY_FILE")
    return parse_registry(path.read_text(encoding="utf-8"), source=str(path))


def build_context(settings: Settings, clock: Clock | None = None) -> BusContext:
    clock = clock or SystemClock()
    registry = load_registry(settings)
    return BusContext(
        registry=registry,
        verifier=load_verifier(settings.keys_dir, clock),
        bus_signer=load_signer(
            settings.keys_dir, registry.bus_mnemonic, settings.signature_profile
        ),
        catalog=type_catalog(settings.xsd_dir),
        clock=clock,
        ids=MessageIdSource(clock),
        max_message_bytes=settings.max_message_bytes,
        xml_limits=XmlLimits(
            max_depth=settings.xml_max_depth,
            max_elements=settings.xml_max_elements,
            max_attributes=settings.xml_max_attributes,
            max_attributes_in_document=settings.xml_max_attributes_in_document,
            max_namespaces=settings.xml_max_namespaces,
            max_namespaces_in_scope=settings.xml_max_namespaces_in_scope,
            max_text_bytes=settings.xml_max_text_bytes,
        ),
        thread_above_bytes=settings.xml_thread_above_bytes,
        time_policy=TimePolicy(message_id_window=timedelta(seconds=settings.message_id_window_s)),
    )


async def open_transport(settings: Settings, clock: Clock) -> Transport:
    policy = QueuePolicy(
        visibility_timeout=timedelta(seconds=settings.visibility_timeout_s),
        prefetch=settings.prefetch,
    )
    if settings.transport == "memory":
        return MemoryTransport(clock=clock, policy=policy)
    return await AmqpTransport.connect(settings.amqp_url, clock=clock, policy=policy)


async def open_router(settings: Settings, clock: Clock | None = None) -> Router:
    """A started router: journal migrated, queues declared."""
    ctx = build_context(settings, clock)
    transport = await open_transport(settings, ctx.clock)
    router = Router(ctx, transport, open_stores(settings.database_url).journal)
    await router.start()
    return router


def open_aggregator(settings: Settings, router: Router) -> Aggregator:
    """The service-request aggregator on the router's journal; it signs for portals with
    their keys held server-side (see :mod:`gateway.aggregator.service`)."""
    path = settings.services_file
    if not path.is_file():
        raise InternalError(f"service catalogue {path} does not exist; set SMEVBUS_SERVICES_FILE")
    catalogue = load_catalogue(
        path.read_text(encoding="utf-8"), types=router.ctx.catalog, source=str(path)
    )
    consumers: dict[str, LocalParticipant] = {}

    def client(participant: str) -> LocalParticipant:
        if participant not in consumers:
            consumers[participant] = LocalParticipant(
                router,
                router.ctx.registry.get(participant),
                load_signer(settings.keys_dir, participant, settings.signature_profile),
            )
        return consumers[participant]

    return Aggregator(
        catalogue=catalogue,
        registry=router.ctx.registry,
        store=router.store.service_requests(),
        clients=client,
        clock=router.ctx.clock,
    )


#: Bind addresses meaning "every interface".
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (recognised, not bound)


def callback_guard(settings: Settings, resolver: AbstractResolver | None = None) -> CallbackGuard:
    """The result callbacks' SSRF guard as ``settings`` say. The gateway's own endpoints
    are its listening address (bound to every interface: this machine's name and
    ``localhost``) at ``http_port``, and the host and port of ``public_url``.
    ``resolver``: where names are looked up (default: the operating system)."""
    hosts = (
        [socket.gethostname(), "localhost"]
        if settings.http_host in _WILDCARD_HOSTS
        else [settings.http_host]
    )
    own = [(host, settings.http_port) for host in hosts]
    if settings.public_url is not None:
        public = yarl.URL(settings.public_url)
        if public.raw_host and public.port:
            own.append((public.raw_host, public.port))
    return CallbackGuard(
        allowed_hosts=settings.callback_hosts,
        networks=settings.callback_networks,
        own=own,
        resolver=resolver,
        timeout=settings.callback_resolve_timeout_s,
    )
