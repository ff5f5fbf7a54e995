"""The composition root: the whole bus built from :class:`~gateway.config.Settings`.

The one place components are chosen and handed to each other: registry, XML and
crypto context, transport (memory or RabbitMQ), journal and service-request store,
router, aggregator, result callbacks (sender, SSRF guard, dispatcher), and the
background tasks, each supervised (:mod:`gateway.supervisor`):

* ``dead-letters``: journal what the transport dead-letters;
* ``queued-marks``: journal QUEUED what was published and not handed out within a
  second (:mod:`gateway.router.marks`; the rest once more on :meth:`Bus.close`);
* ``replies.<portal>``: the aggregator's subscription on each portal's response queue
  (:class:`~gateway.aggregator.replies.ReplyIntake`);
* ``reply-gathering``: whether a fan-out's replies may wait for each other here, by
  whether another process consumes the same portals' replies (:meth:`Bus.gather_if_alone`);
* ``deadlines``: fire due service-request deadlines;
* ``callbacks``: POST due result callbacks (woken when this process finishes one, whose
  callback the finishing write claimed for it: no claim statement; the outbox once an
  interval);
* ``resume``: once, after start, count what a restart left pending;
* ``relay``: publish what a process journaled and died before publishing
  (:mod:`gateway.router.outbox`);
* ``sampler.queues``, ``sampler.availability``, ``sampler.certificates``: the figures
  ``/metrics`` shows that are read rather than counted (:mod:`gateway.ops.samplers`).

``smevbus serve`` (through the HTTP app's lifespan), ``smevbus demo``, the adapters,
the tests (:mod:`gateway.testing.bus`) and the benchmarks all build it here, so they
run the same wiring. Nobody else reaches into another component's insides: what the
HTTP layer and the CLI need, :class:`Bus` offers.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import structlog
import yarl
from aiohttp.abc import AbstractResolver
from cryptography import x509

from gateway.aggregator import Aggregator, load_catalogue
from gateway.aggregator.callback_guard import CallbackGuard
from gateway.aggregator.callbacks import (
    CallbackDispatcher,
    CallbackSender,
    HttpSender,
    RetryPolicy,
)
from gateway.aggregator.replies import ReplyIntake
from gateway.api.views import callback_body
from gateway.config import Settings
from gateway.core.admission import TimePolicy
from gateway.core.clock import Clock, MessageIdSource, SystemClock
from gateway.core.errors import InternalError
from gateway.core.registry import Registry, parse_registry
from gateway.crypto.certificates import validity_problem
from gateway.crypto.keystore import load_signer, load_verifier
from gateway.ops.kpi_queries import ops_database
from gateway.ops.queues import ManagementApi
from gateway.ops.samplers import Samplers
from gateway.router.context import BusContext
from gateway.router.local import LocalParticipant
from gateway.router.marks import DELAY
from gateway.router.router import Router
from gateway.store import open_stores as open_database
from gateway.store.base import ServiceRequests, Store
from gateway.store.callback_outbox import CallbackOutbox
from gateway.store.service_requests import ServiceRequestRecord
from gateway.supervisor import Supervisor, held, rounds
from gateway.transport.base import Direction, Transport
from gateway.transport.opening import open_transport
from gateway.xml.parse import XmlLimits
from gateway.xml.schema import type_catalog

log = structlog.get_logger(__name__)

#: Seconds between two looks at how many processes consume the portals' replies.
GATHERING_CHECK_S: Final = 5.0

# --- the parts, each from settings ------------------------------------------------------


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


def open_stores(settings: Settings) -> tuple[Store, ServiceRequests]:
    """The journal and the service-request store on it, one database (not migrated)."""
    stores = open_database(settings.database_url)
    return stores.journal, stores.service_requests


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


def build_aggregator(
    settings: Settings, ctx: BusContext, router: Router, store: ServiceRequests
) -> Aggregator:
    """The service-request aggregator; it signs for portals with their keys held
    server-side (see :mod:`gateway.aggregator.service`) and sends through the router
    in process (:class:`~gateway.router.local.LocalParticipant`)."""
    path = settings.services_file
    if not path.is_file():
        raise InternalError(f"service catalogue {path} does not exist; set SMEVBUS_SERVICES_FILE")
    catalogue = load_catalogue(
        path.read_text(encoding="utf-8"), types=ctx.catalog, source=str(path)
    )
    consumers: dict[str, LocalParticipant] = {}

    def client(participant: str) -> LocalParticipant:
        if participant not in consumers:
            consumers[participant] = LocalParticipant(
                router,
                ctx.registry.get(participant),
                load_signer(settings.keys_dir, participant, settings.signature_profile),
                ctx.ids,
            )
        return consumers[participant]

    return Aggregator(
        catalogue=catalogue, registry=ctx.registry, store=store, clients=client, clock=ctx.clock
    )


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


# --- the whole ---------------------------------------------------------------------------


@dataclass
class Bus:
    """The bus of one process: built by :func:`assemble`, run by :meth:`start`, ended by
    :meth:`close` (which closes everything it was given too)."""

    settings: Settings
    ctx: BusContext
    transport: Transport
    journal: Store
    router: Router
    aggregator: Aggregator
    guard: CallbackGuard
    sender: CallbackSender
    callbacks: CallbackDispatcher
    #: The participants whose replies the aggregator consumes (portals with API tokens).
    portals: tuple[str, ...]
    #: The queue, availability and certificate figures of ``/metrics``, read in the
    #: background (and what the operator's console reads of them).
    samplers: Samplers
    supervisor: Supervisor = field(default_factory=Supervisor)
    #: When the callback loop next works the outbox (``time.monotonic()``).
    _outbox_round: float = field(default=0.0, init=False)
    #: How many processes consumed the portals' replies at the last look (None: not yet).
    _reply_consumers: int | None = field(default=None, init=False)

    @property
    def registry(self) -> Registry:
        return self.ctx.registry

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    async def start(self, *, background: bool = True) -> None:
        """Migrate the journal, declare the queues, watch the dead letters; with
        ``background`` also consume the portals' replies and run the QUEUED marks,
        deadline, callback and relay loops. Tests that drive those themselves pass
        ``background=False``. Every subscription is in place when this returns."""
        await self.router.start()
        self.supervisor.spawn("dead-letters", await held(self.router.watch_dead_letters))
        if not background:
            return
        self.supervisor.spawn("queued-marks", lambda: rounds(self._journal_queued_marks, DELAY))
        for portal in self.portals:
            await self.serve_portal(portal)
        await self.gather_if_alone()
        self.supervisor.spawn(
            "reply-gathering", lambda: rounds(self.gather_if_alone, GATHERING_CHECK_S)
        )
        interval = self.settings.aggregator_interval_s
        self.supervisor.spawn("deadlines", lambda: rounds(self._fire_deadlines, interval))
        # A reply that makes a request final claims its callback in the same write;
        # the loop, woken, POSTs it. The outbox is worked once an interval.
        self.aggregator.callback_lease = self.callbacks.policy.lease
        self.supervisor.spawn(
            "callbacks",
            lambda: rounds(self._deliver_callbacks, interval, self.aggregator.finalized),
        )
        self.supervisor.spawn("resume", self._resume)
        relay_after = self.settings.relay_after_s
        self.supervisor.spawn("relay", lambda: rounds(self._relay_stranded, relay_after / 2))
        self.samplers.spawn(self.supervisor)

    def replies(self, portal: str) -> ReplyIntake:
        """The aggregator's intake of ``portal``'s replies (not subscribed)."""
        return ReplyIntake(self.aggregator, self.router, self.transport, portal)

    async def serve_portal(self, portal: str) -> None:
        """Consume ``portal``'s replies into its service requests from now on."""
        self.supervisor.spawn(f"replies.{portal}", await held(self.replies(portal).subscribe))

    async def gather_if_alone(self) -> None:
        """Let a fan-out's replies wait for each other (``SMEVBUS_AGGREGATOR_GATHER_MS``,
        :mod:`gateway.aggregator.reply_turns`) only while no other process consumes the
        replies of the portals this one serves. Another one (``serve --workers N``, a
        second gateway) takes its share of a request's replies, which a turn here would
        wait for the whole window in vain (measured with two workers on 2 cores: a
        three-part fan-out at p50 46 ms, against about 30 ms with no window). What the
        transport cannot tell (it is down, say) leaves the window as it was."""
        try:
            async with asyncio.timeout(self.settings.metrics_timeout_s):
                counts = [
                    await self.transport.counts(Direction.RESPONSES, portal)
                    for portal in self.portals
                ]
        except Exception as exc:
            log.info("reply_consumers_unknown", error=repr(exc))
            return
        consumers = max((c.consumers or 0 for c in counts), default=0)
        if consumers == self._reply_consumers:
            return
        self._reply_consumers = consumers
        gather_ms = self.settings.aggregator_gather_ms if consumers <= 1 else 0
        self.aggregator.reply_gather = timedelta(milliseconds=gather_ms)
        log.info("reply_gathering", window_ms=gather_ms, consumers=consumers)

    async def close(self) -> None:
        """Stop the background tasks, then close the sender, transport and journal."""
        await self.supervisor.close()
        try:
            await self._journal_queued_marks(everything=True)
        except Exception:  # the relay journals them later; close the rest
            log.warning("queued_marks_not_journaled", exc_info=True)
        if isinstance(self.sender, HttpSender):
            await self.sender.aclose()
        await self.transport.close()
        if self.samplers.journal is not None:
            await self.samplers.journal.close()
        await self.journal.close()

    # --- what the HTTP layer and the CLI need ------------------------------------------

    def handle(
        self, raw: bytes, *, tls_client: x509.Certificate | None = None
    ) -> Coroutine[Any, Any, tuple[int, bytes]]:
        """One SOAP request to ``/ws``: ``(http_status, soap_reply)``; never raises.

        The router's coroutine itself: a frame of our own would be resumed at each of
        the ~18 suspensions of a round trip for nothing."""
        return self.router.handle(raw, tls_client=tls_client)

    async def readiness(self) -> dict[str, str]:
        """``{"journal", "transport", "keys", "registry"}`` -> ``"ok"`` or why not."""
        checks = await self.router.readiness()
        signer = self.ctx.bus_signer.certificate
        checks["keys"] = validity_problem(signer, self.clock.now()) or "ok"
        checks["registry"] = "ok" if self.registry.participants else "no participants registered"
        return checks

    def knows(self, participant: str) -> bool:
        """Whether ``participant`` is registered on the bus."""
        return participant in self.ctx.registry.mnemonics

    # --- the background tasks ------------------------------------------------------------

    async def _fire_deadlines(self) -> None:
        await self.aggregator.fire_deadlines()

    async def _deliver_callbacks(self) -> None:
        claimed = self.aggregator.claimed_callbacks()
        try:
            await self.callbacks.deliver(claimed)
        finally:
            self.aggregator.callbacks_attempted(claimed)
        now = time.monotonic()
        if now >= self._outbox_round:
            self._outbox_round = now + self.settings.aggregator_interval_s
            await self.callbacks.deliver_due()

    async def _journal_queued_marks(self, *, everything: bool = False) -> None:
        await self.router.journal_queued_marks(everything=everything)

    async def _resume(self) -> None:
        await self.aggregator.resume()

    async def _relay_stranded(self) -> None:
        await self.router.relay(timedelta(seconds=self.settings.relay_after_s)).sweep()


def assemble(
    settings: Settings,
    *,
    ctx: BusContext,
    transport: Transport,
    journal: Store,
    service_requests: ServiceRequests,
    guard: CallbackGuard | None = None,
    sender: CallbackSender | None = None,
    portals: Iterable[str] | None = None,
) -> Bus:
    """The bus from its parts (not started). ``guard``: where result callbacks may go
    (default: as ``settings`` say); ``sender``: what POSTs them (default: aiohttp behind
    ``guard``); ``portals``: whose replies the aggregator consumes (default: the
    participants of ``settings.api_tokens``)."""
    router = Router(ctx, transport, journal)
    aggregator = build_aggregator(settings, ctx, router, service_requests)
    guard = guard or callback_guard(settings)
    sender = sender or HttpSender(guard, timeout=settings.callback_timeout_s)
    chosen = sorted(set(settings.api_tokens.values())) if portals is None else portals
    return Bus(
        settings=settings,
        ctx=ctx,
        transport=transport,
        journal=journal,
        router=router,
        aggregator=aggregator,
        guard=guard,
        sender=sender,
        callbacks=callback_dispatcher(settings, aggregator, sender),
        portals=tuple(chosen),
        samplers=samplers(settings, ctx, transport, journal),
    )


def samplers(settings: Settings, ctx: BusContext, transport: Transport, journal: Store) -> Samplers:
    """The bus's background samplers as ``settings`` say (not started)."""
    management = settings.rabbitmq_management_url
    participants = ctx.registry.mnemonics
    return Samplers(
        transport=transport,
        participants=tuple(participants),
        clock=ctx.clock,
        keys_dir=settings.keys_dir,
        certificate_holders=(*participants, ctx.registry.bus_mnemonic),
        journal=ops_database(journal),
        management=(
            None
            if management is None or settings.transport != "amqp"
            else ManagementApi(management, settings.amqp_url, timeout=settings.metrics_timeout_s)
        ),
        interval=settings.metrics_interval_s,
        availability_interval=settings.availability_interval_s,
        timeout=settings.metrics_timeout_s,
        window=timedelta(seconds=settings.availability_window_s),
    )


async def open_bus(
    settings: Settings,
    *,
    clock: Clock | None = None,
    guard: CallbackGuard | None = None,
    portals: Iterable[str] | None = None,
) -> Bus:
    """The bus as ``settings`` say: transport connected, stores opened; call
    :meth:`Bus.start` next."""
    ctx = build_context(settings, clock)
    transport = await open_transport(settings, ctx.clock)
    journal, service_requests = open_stores(settings)
    return assemble(
        settings,
        ctx=ctx,
        transport=transport,
        journal=journal,
        service_requests=service_requests,
        guard=guard,
        portals=portals,
    )
